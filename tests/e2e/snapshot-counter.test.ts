/**
 * Vm.snapshot / Vm.restore on the bt engine with a small guest that counts on the serial port
 * (guests/counter.asm: count in a register and in memory, the UART's scratch register set; it
 * prints BAD if any of them changed): the restored VM continues the count with no gap and no
 * repeat, the state file names its engine, and the memory file is sparse
 * (tests/kvm/snapshot.test.ts does the same under kvm; tests/kvm/cross-engine.test.ts moves
 * snapshots between the engines).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB } from '../../src/machine/layout.js';
import { Vm } from '../../src/vmm/vm.js';

const nasm = ((): boolean => {
  try {
    execFileSync('nasm', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-bt-snapshot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
const lines = (t: string): number => t.split('\n').length - 1;

describe.skipIf(!nasm)('a bt snapshot of a counting guest', () => {
  it('restores in a new Vm and counts on from where it was', async () => {
    const kernel = path.join(dir, 'counter.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('guests/counter.asm', import.meta.url))]);
    const files = { statePath: path.join(dir, 'vm.state'), memPath: path.join(dir, 'vm.mem') };
    const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 1, engine: 'bt', kernel });
    let before = '';
    vm.console.on('data', (b: Buffer) => (before += b.toString('latin1')));
    vm.start();
    await until(() => lines(before) >= 10, 'ten counts');
    await vm.pause();
    await vm.snapshot(files);
    await vm.kill();
    expect(JSON.parse(readFileSync(files.statePath, 'utf8'))).toMatchObject({ format: 'typevisor-snapshot', engine: 'bt' });
    const st = statSync(files.memPath);
    expect(st.size).toBe(64 * MiB);
    expect(st.blocks * 512).toBeLessThan(4 * MiB);

    const restored = await Vm.restore(files);
    let after = '';
    restored.console.on('data', (b: Buffer) => (after += b.toString('latin1')));
    restored.start();
    try {
      await until(() => lines(after) >= 10, 'ten counts after the restore');
    } finally {
      await restored.kill();
    }
    const all = before + after;
    expect(all).not.toContain('BAD');
    const counts = all.split('\n').slice(0, -1).map((l) => parseInt(/^n=([0-9a-f]{8}) /.exec(l)![1]!, 16));
    counts.forEach((n, i) => expect(n).toBe(i));
  }, 60_000);
});
