/**
 * What the side-by-side benchmarks share: QEMU from Debian's packages (installed when missing),
 * the median, and driving a guest's shell with wall-clock timing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import type { VmProcess } from '../tests/support/guest-process.js';

/** Install qemu-system-x86 from Debian when `qemu-system-x86_64` is not there. */
export function ensureQemu(): void {
  if (spawnSync('qemu-system-x86_64', ['--version']).status === 0) return;
  console.error('bench: installing qemu-system-x86 from Debian ...');
  execFileSync('apt-get', ['install', '-y', '-qq', 'qemu-system-x86'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** `p`, or an error with the VM's output if the VM ends first. */
export function unlessExited<T>(vm: VmProcess, p: Promise<T>): Promise<T> {
  const died = vm.exited.then(({ code, signal }) => {
    throw new Error(`the VM ended (status ${code}, signal ${signal}); output tail:\n${vm.output.slice(-3000)}\nstderr:\n${vm.stderr.slice(-2000)}`);
  });
  return Promise.race([p, died]);
}

/** Host wall time of one shell command in the guest, checking its output. */
export async function timed(vm: VmProcess, cmd: string, expect: RegExp, timeoutMs: number): Promise<{ s: number; out: string }> {
  const t0 = performance.now();
  const out = await unlessExited(vm, vm.sh(cmd, timeoutMs));
  const s = (performance.now() - t0) / 1000;
  if (!expect.test(out)) throw new Error(`guest printed ${JSON.stringify(out)} for ${cmd}`);
  process.stderr.write(`    ${s.toFixed(2)} s: ${cmd.split(' 2>&1')[0]}\n`);
  return { s, out };
}
