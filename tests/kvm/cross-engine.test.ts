/**
 * Snapshots that move a running guest between the engines (src/vmm/snapshot/cross-engine.ts),
 * with two small guests:
 *   - tests/e2e/guests/cross-counter.asm: long mode's compatibility mode with 4-level paging,
 *     a periodic local APIC timer it sleeps on in HLT, x87/SSE registers, segment bases, CR0.WP
 *     and the PIC masks, all checked before every line ("BAD ..." on any difference); t grows by
 *     exactly 5 per line;
 *   - tests/e2e/guests/counter.asm: a busy TSC-paced counter (never halted).
 * Each goes kvm → bt → kvm and bt → kvm → bt: the count continues with no gap and no repeat
 * on every engine, and nothing prints BAD. counter.asm also goes both ways with two vCPUs (its
 * application processor counts in memory: it continues on every engine). Also the refusal of CPU
 * features the new engine lacks (named, unless allowed).
 *
 * kvm_pvm (this project's usual host) ignores KVM_SET_CPUID2: its guests see the host's CPU
 * whatever model they were given, and a move to bt is refused for that unless allowed. Under
 * kvm_intel/kvm_amd, a VM started with --cpu-model typevisor moves without it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvmAvailability } from '../../src/kvm/detect.js';
import { MiB } from '../../src/machine/layout.js';
import { Vm, type SnapshotFiles } from '../../src/vmm/vm.js';
import { kvmSkipReason } from './harness.js';

const skip = kvmSkipReason();
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-cross-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** kvm_pvm applies no CPU model: its guests are offered the host's features. */
const modelIgnored = kvmAvailability().module === 'kvm_pvm';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
const lines = (t: string): number => t.split('\n').length - 1;

type Engine = 'bt' | 'kvm';
const kernels: Record<string, string> = {};

/**
 * Run `vm` until it printed `more` lines (and `also` holds for its output, if given), pause it,
 * snapshot it to `files`, kill it; its output.
 */
async function runAndSnapshot(vm: Vm, more: number, files: SnapshotFiles, also?: (text: string) => boolean): Promise<string> {
  let text = '';
  vm.console.on('data', (b: Buffer) => (text += b.toString('latin1')));
  vm.start();
  const what = `${more} lines${also ? ' and the AP counting' : ''} on ${vm.config.engine}`;
  await until(() => text.includes('BAD') || (lines(text) >= more && (!also || also(text))), what);
  await vm.pause();
  await vm.snapshot(files);
  await vm.kill();
  return text;
}

/** Every line "n=XXXXXXXX t=XXXXXXXX" (or counter.asm's "n=... ap=..."): n counts from 0. */
function checkCount(text: string, ticksPerLine: number | undefined): { n: number; t: number }[] {
  expect(text).not.toContain('BAD');
  const rows = text.split('\n').slice(0, -1).map((l) => {
    const m = /^n=([0-9a-f]{8}) (?:t|ap)=([0-9a-f]{8})$/.exec(l);
    if (!m) throw new Error(`unexpected console line ${JSON.stringify(l)}`);
    return { n: parseInt(m[1]!, 16), t: parseInt(m[2]!, 16) };
  });
  rows.forEach((r, i) => {
    expect(r.n).toBe(i);
    if (ticksPerLine !== undefined) expect(r.t).toBe(i * ticksPerLine);
  });
  return rows;
}

/** The AP's count (counter.asm's "ap=") grew between this leg's first complete line and its last. */
function apCountedOn(leg: string): boolean {
  const aps = [...leg.matchAll(/ap=([0-9a-f]{8})\n/g)].map((m) => parseInt(m[1]!, 16));
  return aps.length >= 2 && aps[aps.length - 1]! > aps[0]!;
}

/** Start `guest` on `route[0]`, then move it through the rest; every leg prints ~20 more lines. */
async function journey(guest: string, route: Engine[], ticksPerLine?: number, cpus = 1): Promise<{ text: string; legs: number[]; rows: { n: number; t: number }[] }> {
  let text = '';
  const legs: number[] = [];
  let files: SnapshotFiles | undefined;
  for (const [i, engine] of route.entries()) {
    const vm = files
      ? await Vm.restore(files, { engine, allowCpuMismatch: modelIgnored })
      : await Vm.create({ memoryBytes: 32 * MiB, cpus, engine, kernel: kernels[guest]!, cpuModel: 'typevisor' });
    expect(vm.config.engine).toBe(engine);
    expect(vm.config.cpus).toBe(cpus);
    const next = { statePath: path.join(dir, `${guest}-${i}.state`), memPath: path.join(dir, `${guest}-${i}.mem`) };
    // with two vCPUs, each leg also runs until the AP has counted on: under load a host may leave
    // the AP's thread unscheduled for the 20 lines the BSP prints (~40 ms)
    text += await runAndSnapshot(vm, 20, next, cpus > 1 ? apCountedOn : undefined);
    legs.push(lines(text));
    files = next;
  }
  return { text, legs, rows: checkCount(text, ticksPerLine) };
}

describe.skipIf(skip)(`snapshots moving between the kvm and bt engines${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    for (const g of ['cross-counter', 'counter']) {
      kernels[g] = path.join(dir, `${g}.bin`);
      execFileSync('nasm', ['-f', 'bin', '-o', kernels[g], fileURLToPath(new URL(`../e2e/guests/${g}.asm`, import.meta.url))]);
    }
  });

  it.each([
    ['cross-counter', ['kvm', 'bt', 'kvm'], 5],
    ['cross-counter', ['bt', 'kvm', 'bt'], 5],
    ['counter', ['kvm', 'bt', 'kvm'], undefined],
    ['counter', ['bt', 'kvm', 'bt'], undefined],
  ] as [string, Engine[], number | undefined][])('%s goes %j and counts on with every register, timer and page table intact', async (guest, route, ticks) => {
    const { legs } = await journey(guest, route, ticks);
    // each engine printed its own share (the last leg's lines came after two moves)
    legs.reduce((prev, n) => (expect(n).toBeGreaterThanOrEqual(prev + 20), n), 0);
  }, 120_000);

  it.each([
    [['kvm', 'bt', 'kvm']],
    [['bt', 'kvm', 'bt']],
  ] as [Engine[]][])('counter with two vCPUs goes %j: both count on, the AP from where it was on every engine', async (route) => {
    const { legs, rows } = await journey('counter', route, undefined, 2);
    legs.reduce((prev, n) => (expect(n).toBeGreaterThanOrEqual(prev + 20), n), 0);
    // the AP's count (in memory, moved with RAM) never goes back, and grows on every leg
    rows.reduce((prev, r) => (expect(r.t).toBeGreaterThanOrEqual(prev), r.t), 0);
    let start = 0;
    for (const end of legs) {
      expect(rows[end - 1]!.t).toBeGreaterThan(rows[start]!.t);
      start = end;
    }
  }, 120_000);

  it('refuses what cannot move, in one line, leaving the files as they were', async () => {
    // the host's CPU model: features the bt CPU lacks, named; --allow-cpu-mismatch moves it with a warning
    const host = { statePath: path.join(dir, 'host.state'), memPath: path.join(dir, 'host.mem') };
    const before = await runAndSnapshot(await Vm.create({ memoryBytes: 32 * MiB, cpus: 1, engine: 'kvm', kernel: kernels.counter! }), 5, host);
    await expect(Vm.restore(host, { engine: 'bt' })).rejects.toThrow(/^Cannot restore the kvm snapshot on the bt engine: the guest was offered CPU features the bt engine's CPU lacks \(CPUID\.[^)]*bits? [0-9, ]+.*\); start the VM with --cpu-model typevisor on the kvm engine/);
    const warnings: string[] = [];
    const moved = await Vm.restore(host, { engine: 'bt', allowCpuMismatch: true, log: (l) => warnings.push(l) });
    expect(warnings.join('\n')).toMatch(/warning: the guest was offered CPU features the engine it moves to lacks/);
    expect(moved.config).toMatchObject({ engine: 'bt', cpuModel: 'typevisor' });
    let after = '';
    moved.console.on('data', (b: Buffer) => (after += b.toString('latin1')));
    moved.start();
    await until(() => lines(after) >= 5, 'counting on the bt engine');
    await moved.kill();
    checkCount(before + after, undefined);

    // kvm_pvm ignores the CPU model: even a typevisor-model guest there was offered more
    if (modelIgnored) {
      const tv = { statePath: path.join(dir, 'tv.state'), memPath: path.join(dir, 'tv.mem') };
      await runAndSnapshot(await Vm.create({ memoryBytes: 32 * MiB, cpus: 1, engine: 'kvm', kernel: kernels.counter!, cpuModel: 'typevisor' }), 5, tv);
      await expect(Vm.restore(tv, { engine: 'bt' })).rejects.toThrow(/the guest was offered CPU features the bt engine's CPU lacks/);
    }
  }, 120_000);
});
