/**
 * The network relay of the kvm engine (src/net/relay.ts) alone, between the main thread and a
 * worker thread, no KVM: the worker's event loop delivers (under KVM a kick does). Not a test:
 *
 *   node --import tsx bench/net-relay.ts        (N=frames, SIZE=bytes in the environment)
 *
 * Rows: frames host→device as fast as the credit window lets them (the device half's card takes
 * every frame); ping-pong, the device half echoing each frame back through its transmit.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { NetRelayDevice, NetRelayHost } from '../src/net/relay.js';

const N = Number(process.env.N ?? 200_000);
const SIZE = Number(process.env.SIZE ?? 1514);
if (isMainThread) {
  for (const mode of ['stream', 'pingpong'] as const) {
    const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs')).href;
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    const w = new Worker(code, { eval: true, workerData: { mode } });
    let got = 0;
    const frame = new Uint8Array(SIZE);
    let sent = 0;
    const total = mode === 'stream' ? N : N / 10;
    const start = performance.now();
    const done = new Promise<void>((resolve) => {
      const host = new NetRelayHost((m, t) => w.postMessage(m, t), () => {
        got++;
        if (mode === 'pingpong') {
          if (got === total) resolve();
          else host.receive(frame);
        }
      });
      const drain = (): void => {
        while (sent < total && host.receive(frame)) sent++;
      };
      host.onRxSpace(drain);
      w.on('message', (m) => {
        if (m?.type === 'count') resolve();
        else host.handle(m);
      });
      if (mode === 'stream') drain();
      else host.receive(frame);
    });
    await done;
    const ms = performance.now() - start;
    if (mode === 'stream') console.log(`host→device ${total} frames of ${SIZE} B: ${(total / ms * 1000 / 1000).toFixed(0)}k frames/s, ${(total * SIZE / ms / 1000).toFixed(0)} MB/s`);
    else console.log(`ping-pong ${total} rounds: ${(ms * 1000 / total).toFixed(1)} µs per round trip`);
    await w.terminate();
  }
} else {
  const mode = (workerData as { mode: string }).mode;
  let n = 0;
  const dev = new NetRelayDevice((m, t) => parentPort!.postMessage(m, t));
  dev.attach({
    receive: (f) => {
      n++;
      if (mode === 'pingpong') dev.transmit(f);
      else if (n === N) queueMicrotask(() => parentPort!.postMessage({ type: 'count' }));
      return true;
    },
    onRxSpace: () => {},
    resumeTx: () => {},
  });
  parentPort!.on('message', (m) => dev.handle(m));
}
