/**
 * The KVM engine on small guests that run even on a kvm_pvm host (where KVM emulates every
 * instruction): mode switches, port I/O, MMIO, interrupts through the in-kernel PIC, the
 * i8042 reset and debug-exit stops, device timers, two vCPUs, stopping a busy or halted
 * guest, and teardown without leaks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { exitStatus } from '../../src/machine/machine.js';
import type { GuestMemory } from '../../src/machine/memory.js';
import { BOOT_GDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START } from '../../src/machine/layout.js';
import {
  ENTRY_GUEST_32,
  ENTRY_GUEST_64,
  EXIT_GUEST,
  HALT_GUEST,
  IRQ_GUEST,
  MMIO_GUEST,
  MODES_GUEST,
  RESET_GUEST,
  SMP_GUEST,
  SPIN_GUEST,
  TIMER_GUEST,
} from './guests.js';
import { kvmSkipReason, runGuest } from './harness.js';
import { dropVcpuThreads, prestartVcpuThreads, vcpuThreadsWaiting } from '../../src/kvm/prestart.js';
import { MMIO_SCRATCH } from './test-machine.js';
import { KvmVm, dropSpareKvmVm, prepareKvmVm } from '../../src/kvm/vm.js';
import { createKvmGuestMemory } from '../../src/kvm/memory.js';
import { MiB } from '../../src/machine/layout.js';

const skip = kvmSkipReason();
if (skip) console.warn(`skipping KVM engine tests: ${skip}`);

describe.skipIf(skip)('KvmEngine on small guests', () => {
  it('goes real mode -> protected -> long mode, printing on the UART port at each step', async () => {
    const r = await runGuest(MODES_GUEST);
    expect(r.out).toBe('RPL');
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 0x21 });
    expect(exitStatus(r.reason)).toBe(0x43);
  });

  it('runs its vCPUs on threads started ahead (prestart.ts) when there are some, a new thread for the rest', async () => {
    prestartVcpuThreads(1, [new URL('./test-machine.ts', import.meta.url)]);
    expect(vcpuThreadsWaiting()).toBe(1);
    const r = await runGuest(SMP_GUEST, { cpus: 2 });
    expect(vcpuThreadsWaiting()).toBe(0);
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 5 });
    expect([...r.out].sort().join('')).toBe('01');
    // one waiting thread that nobody takes is ended on request (and never keeps the process alive: unref'd)
    prestartVcpuThreads(2);
    prestartVcpuThreads(1); // tops up, never more than asked
    expect(vcpuThreadsWaiting()).toBe(2);
    await dropVcpuThreads();
    expect(vcpuThreadsWaiting()).toBe(0);
  });

  it('enters a guest in 64-bit long mode and in 32-bit protected mode as a loader leaves it', async () => {
    const gdt = { base: BOOT_GDT_START, limit: 4 * 8 - 1, cs: 0x08, ds: 0x10 };
    const writeGdt = (m: GuestMemory, code: bigint): void => {
      m.write64(BOOT_GDT_START, 0n);
      m.write64(BOOT_GDT_START + 8, code);
      m.write64(BOOT_GDT_START + 16, 0x00cf92000000ffffn); // flat data
    };
    const long = await runGuest(ENTRY_GUEST_64, {
      loadAt: 0x10000,
      entry: { mode: 'long64', rip: 0x10000, regs: { rsi: 0x41, rsp: BOOT_STACK_POINTER }, cr3: PML4_START, gdt },
      prepare: (m) => {
        writeGdt(m, 0x00af9a000000ffffn); // 64-bit code
        m.write64(PML4_START, BigInt(PDPTE_START | 3));
        m.write64(PDPTE_START, BigInt(PDE_START | 3));
        m.write64(PDE_START, 0x83n); // 2 MiB identity page
      },
    });
    expect(long.out).toBe('A');
    expect(long.reason).toEqual({ kind: 'debug-exit', value: 0x11 });
    const prot = await runGuest(ENTRY_GUEST_32, {
      loadAt: 0x10000,
      entry: { mode: 'protected32', rip: 0x10000, regs: { rsi: 0x42 }, gdt },
      prepare: (m) => writeGdt(m, 0x00cf9a000000ffffn), // 32-bit code
    });
    expect(prot.out).toBe('B');
    expect(prot.reason).toEqual({ kind: 'debug-exit', value: 0x11 });
  });

  it('routes an MMIO write and read to the device on the MMIO bus', async () => {
    const r = await runGuest(MMIO_GUEST);
    expect(r.events.filter((e) => 'mmio' in e)).toEqual([
      { mmio: 'write', offset: 0, size: 4, value: 0x12345678 },
      { mmio: 'read', offset: 0, size: 4, value: 0xedcba987 },
    ]);
    expect(MMIO_SCRATCH).toBe(0xc000_0000);
    expect(r.out).toBe('M');
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 1 });
  });

  it('delivers a device interrupt line through the in-kernel PIC to the guest handler', async () => {
    const r = await runGuest(IRQ_GUEST);
    expect(r.out).toBe('I');
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 3 });
  });

  it('stops with reset on the i8042 reset command and with the debug-exit value', async () => {
    expect((await runGuest(RESET_GUEST)).reason).toEqual({ kind: 'reset' });
    const r = await runGuest(EXIT_GUEST);
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 7 });
    expect(exitStatus(r.reason)).toBe(15);
  });

  it('wakes a halted guest for a device timer', async () => {
    expect((await runGuest(TIMER_GUEST)).reason).toEqual({ kind: 'debug-exit', value: 9 });
  });

  it('stops a spinning guest and a halted guest when asked', async () => {
    for (const guest of [SPIN_GUEST, HALT_GUEST]) {
      const r = await runGuest(guest, { onEvent: (_e, engine) => engine.stop({ kind: 'quit' }) });
      expect(r.reason).toEqual({ kind: 'quit' });
      expect(r.out.length).toBe(1);
    }
  });

  it('runs two vCPUs that each report their own APIC id', async () => {
    const r = await runGuest(SMP_GUEST, { cpus: 2 });
    expect(r.reason).toEqual({ kind: 'debug-exit', value: 5 });
    expect([...r.out].sort().join('')).toBe('01');
  });

  it('runs on a VM opened ahead (prepareKvmVm), whose guest clock starts at 0, and closes one nobody took', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const before = fds();
    prepareKvmVm();
    expect(fds()).toBe(before + 2); // /dev/kvm and the VM, waiting
    await new Promise((r) => setTimeout(r, 300));
    const ram = createKvmGuestMemory(2 * MiB);
    try {
      const vm = new KvmVm(ram.handle); // takes it
      expect(fds()).toBe(before + 3); // + the memfd
      expect(vm.getClock()).toBeLessThan(300_000_000n); // not the 300 ms it waited: a boot starts at 0
      vm.close();
    } finally {
      ram.dispose();
    }
    prepareKvmVm();
    const r = await runGuest(EXIT_GUEST); // the engine's KvmVm takes the prepared one
    expect(r.reason.kind).toBe('debug-exit');
    expect(fds()).toBe(before);
    prepareKvmVm();
    dropSpareKvmVm();
    expect(fds()).toBe(before);
  });

  it('starts and stops 50 VMs without leaking fds, threads or mappings', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const count = () => ({
      fds: readdirSync('/proc/self/fd').length,
      threads: readdirSync('/proc/self/task').length,
      maps: readFileSync('/proc/self/maps', 'utf8').split('\n').length,
    });
    await runGuest(EXIT_GUEST); // warm up: Node starts some threads lazily
    await settle();
    const before = count();
    for (let i = 0; i < 50; i++) {
      const r = await runGuest(i % 2 ? EXIT_GUEST : SPIN_GUEST, { onEvent: (_e, engine) => engine.stop({ kind: 'quit' }) });
      expect(r.reason.kind).toBe(i % 2 ? 'debug-exit' : 'quit');
    }
    await settle();
    const after = count();
    expect(after.fds).toBe(before.fds);
    expect(after.threads).toBeLessThanOrEqual(before.threads);
    expect(after.maps).toBeLessThanOrEqual(before.maps + 2);
  }, 180_000); // ~0.2-0.4 s a VM (worker start-up dominates); more on a loaded host
});
