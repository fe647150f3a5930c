/**
 * vCPU threads started ahead of need. A worker thread costs node ~40-80 ms before its first line
 * runs (a new isolate and node environment, then the vCPU module and the machine's devices to
 * load): on the start-up path (`typevisor run`) and the restore path (`typevisor serve`, then
 * /snapshot/load) that would come after everything else. Started early, it boots on another core
 * while this thread loads the kernel or parses a snapshot, and the engine hands it its vCPU with
 * one message (vcpu-worker.ts: a worker started with `{ warm }` waits for `{ type: 'init' }`).
 *
 * Warm threads are unref'd: one nobody takes never keeps the process alive. This module imports
 * nothing heavy, so a CLI can start threads before it loads the rest of typevisor.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** workerData of a warm vCPU thread: modules to load while it waits for its vCPU. */
export interface WarmWorkerData {
  warm: true;
  preload: string[];
}

/**
 * How to start a worker for `file`, a module beside `here` (default: this module's URL; in the
 * bundle, the bundle's, whose worker entries sit beside it): plain .js, or .ts through tsx.
 */
export function workerScript(file: string, here = import.meta.url): { script: string | URL; eval: boolean } {
  if (!here.endsWith('.ts')) return { script: new URL(`./${file}.js`, here), eval: false };
  // Running from sources (tests, `node --import tsx`): register tsx inside the worker first.
  const req = createRequire(here);
  const api = pathToFileURL(req.resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs')).href;
  const target = new URL(`./${file}.ts`, here).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); })`;
  return { script: code, eval: true };
}

/** A module URL (file: URL or path) as import() takes it. */
export function toModuleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  return /^[a-z]+:/i.test(m) ? m : pathToFileURL(m).href;
}

/** Threads waiting for a vCPU, each with its listener that drops it from here if it ends. */
const warm: { worker: Worker; drop: () => void }[] = [];

/**
 * Have `count` vCPU threads started and waiting (tops the pool up; never more than asked). The
 * first in line, which the next engine makes its boot CPU's (device) thread, loads `preload`
 * (the machine module) meanwhile.
 */
export function prestartVcpuThreads(count: number, preload: (string | URL)[] = []): void {
  const started = workerScript('vcpu-worker');
  while (warm.length < count) {
    const data: WarmWorkerData = { warm: true, preload: warm.length === 0 ? preload.map(toModuleUrl) : [] };
    const worker = new Worker(started.script, { eval: started.eval, workerData: data });
    worker.unref();
    const entry = {
      worker,
      drop: (): void => {
        const i = warm.indexOf(entry);
        if (i >= 0) warm.splice(i, 1);
      },
    };
    worker.on('exit', entry.drop);
    worker.on('error', entry.drop); // a thread that failed before use: the engine starts a fresh one
    warm.push(entry);
  }
}

/** A started thread waiting for its vCPU (ref'd again: it is the engine's now), or undefined. */
export function takeVcpuThread(): Worker | undefined {
  const entry = warm.shift();
  if (!entry) return undefined;
  entry.worker.off('exit', entry.drop).off('error', entry.drop);
  entry.worker.ref();
  return entry.worker;
}

/** How many started threads wait for a vCPU. */
export function vcpuThreadsWaiting(): number {
  return warm.length;
}

/** End the threads nobody took (tests, a process that changed its mind). */
export async function dropVcpuThreads(): Promise<void> {
  await Promise.all(warm.splice(0).map((e) => e.worker.terminate()));
}
