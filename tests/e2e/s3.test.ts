/**
 * ACPI S3 with a test kernel (guests/s3.asm): it finds the FACS and \_S3 through the ACPI tables,
 * leaves a real-mode waking vector, sets an RTC alarm with PM1 RTC_EN and writes SLP_TYP(S3) |
 * SLP_EN. The machine must stop at that write, wake on the alarm (WAK_STS and RTC_STS set) and
 * start the CPU in real mode at CS:IP = vector >> 4 : vector & 0xF with RAM kept — on the bt
 * engine and on the kvm engine (one vCPU). QEMU 7.2 TCG (with S3 enabled:
 * `-global PIIX4_PM.disable_s3=0`; its wake goes through SeaBIOS's resume path to the same
 * vector) prints the same lines; the expected output is recorded here, so the test also checks
 * without QEMU. With "novector" on its command line the kernel leaves the waking vector 0:
 * typevisor then resets the machine, as SeaBIOS does under QEMU (both end at the reset with
 * -no-reboot). With "xvector" it also sets X_Firmware_Waking_Vector, to 32-bit code, which ACPI
 * 6.5 (§5.2.10, table 5.14) has the firmware prefer, in flat 32-bit protected mode with paging
 * off as our FACS offers no 64-bit wake; SeaBIOS under QEMU 7.2 only reads the real-mode vector
 * (it prints the real-mode lines then), so that case is recorded for typevisor only. With more
 * than one vCPU the kvm engine does not offer S3 (its device thread can stop only its own vCPU).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { kvmAvailability } from '../../src/kvm/detect.js';
import { MiB } from '../../src/machine/layout.js';
import { Vm } from '../../src/vmm/vm.js';
import { CLI } from '../support/guest-process.js';
import { assembleKernel, exitStatus, hasNasm, hasQemu, runOnQemu, type KernelRun } from '../support/test-kernel.js';

const kvm = kvmAvailability();
const ENGINES = [
  { engine: 'bt' as const, skip: undefined },
  { engine: 'kvm' as const, skip: kvm.opens ? undefined : kvm.reason },
];

const WOKE = 'woke\ncs 00000800 ip 0000000c cr0.pe.pg 0\n';
const EXPECTED = `s3: slp_typ 1\n${WOKE}pm1: wak 1 rtc 1 pwrbtn 0\nram kept\n`;
const PASSED = exitStatus(0x21);
const NO_VECTOR = 's3: slp_typ 1\ns3: no waking vector\n';
const EXIT_RESET = 10;

function runOn(engine: 'bt' | 'kvm', kernel: string, args: string[] = []): KernelRun {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', engine, '-m', '64M', ...args, '--kernel', kernel], {
    encoding: 'latin1', input: '', timeout: 60_000,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

describe.skipIf(!hasNasm)('ACPI S3 test kernel', () => {
  const kernel = (): string => assembleKernel('s3');

  describe.each(ENGINES)('on the $engine engine', ({ engine, skip }) => {
    it.skipIf(skip !== undefined)(`sleeps at SLP_EN and wakes on the RTC alarm at the FACS waking vector${skip ? ` (skipped: ${skip})` : ''}`, () => {
      const t0 = Date.now();
      const r = runOn(engine, kernel());
      expect(r.stdout, r.stderr).toBe(EXPECTED);
      expect(r.status).toBe(PASSED);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000); // the alarm is 1-2 s ahead
    });

    it.skipIf(skip !== undefined)('resets the machine when the wake finds no waking vector', () => {
      const r = runOn(engine, kernel(), ['--no-reboot', '--cmdline', 'novector']);
      expect(r.stdout, r.stderr).toBe(NO_VECTOR);
      expect(r.stderr).toMatch(/the guest reset the machine \(S3 wake: the OS left no waking vector in the FACS\)/);
      expect(r.status).toBe(EXIT_RESET);
    });

    it.skipIf(skip !== undefined)('prefers X_Firmware_Waking_Vector when set: flat 32-bit protected mode there', () => {
      const r = runOn(engine, kernel(), ['--cmdline', 'xvector']);
      expect(r.stdout, r.stderr).toBe('s3: slp_typ 1\ns3: 32-bit waking vector\nwoke in 32-bit mode cr0.pe.pg 1\npm1: wak 1 rtc 1 pwrbtn 0\nram kept\n');
      expect(r.status).toBe(PASSED);
    });

    it.skipIf(skip !== undefined)('pauses and resumes while suspended; a snapshot of the sleeping machine is refused', async () => {
      const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 1, engine, kernel: kernel() });
      let output = '';
      vm.on('console', (b) => (output += Buffer.from(b).toString('latin1')));
      const stopped = new Promise((resolve) => vm.on('stopped', resolve));
      vm.start();
      while (!output.includes('slp_typ')) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 300)); // asleep by now (a few instructions after the line; the alarm is 1-2 s ahead)
      await vm.pause();
      await expect(vm.snapshot({ statePath: '/nonexistent/s', memPath: '/nonexistent/m' })).rejects.toThrow(/suspended \(ACPI S3\)/);
      await new Promise((r) => setTimeout(r, 2500)); // paused time is not the guest's: no alarm yet
      expect(output).toBe('s3: slp_typ 1\n');
      vm.resume();
      expect(await stopped).toEqual({ kind: 'debug-exit', value: 0x21 });
      expect(output).toBe(EXPECTED);
    });

    it.skipIf(skip !== undefined)('wakes on a key typed on the console, and on the power button (PWRBTN_STS)', async () => {
      for (const how of ['key', 'power button'] as const) {
        const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 1, engine, kernel: kernel(), cmdline: 'noalarm' });
        let output = '';
        vm.on('console', (b) => (output += Buffer.from(b).toString('latin1')));
        const stopped = new Promise((resolve) => vm.on('stopped', resolve));
        vm.start();
        while (!output.includes('no alarm')) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 1500));
        expect(output, how).toBe('s3: slp_typ 1\ns3: no alarm\n'); // asleep, with nothing to wake it
        if (how === 'key') vm.console.write('\n');
        else void vm.stop(60_000);
        expect(await stopped, how).toEqual({ kind: 'debug-exit', value: 0x21 });
        expect(output, how).toBe(`s3: slp_typ 1\ns3: no alarm\n${WOKE}pm1: wak 1 rtc 0 pwrbtn ${how === 'key' ? 0 : 1}\nram kept\n`);
      }
    });
  });

  it.skipIf(!kvm.opens)(`is not offered S3 on the kvm engine with two vCPUs${kvm.opens ? '' : ` (skipped: ${kvm.reason})`}`, () => {
    const r = runOn('kvm', kernel(), ['--cpus', '2']);
    expect(r.stdout, r.stderr).toBe('no _S3\n');
    expect(r.status).toBe(exitStatus(2));
  });

  it.skipIf(!hasQemu)(`prints the same under QEMU TCG${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
    const s3 = ['-global', 'PIIX4_PM.disable_s3=0'];
    const r = runOnQemu(kernel(), 'qemu64', s3);
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
    const reset = runOnQemu(kernel(), 'qemu64', [...s3, '-append', 'novector']);
    expect(reset.stdout, reset.stderr).toBe(NO_VECTOR);
    expect(reset.status).toBe(0); // QEMU's -no-reboot: a reset ends it with 0
  });
});
