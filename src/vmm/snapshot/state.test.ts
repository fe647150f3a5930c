import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../devices/testing/fake-clock.js';
import { HostClock } from '../../machine/clock.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { applyEntryState } from '../../cpu/system/entry.js';
import type { BlockDevice } from '../../devices/virtio/blk/blk.js';
import { deviceSections } from './devices.js';
import { SnapshotError, STATE_VERSION, restoreMachine, saveMachine, type MachineState } from './state.js';
import { buildRig, cpuFields, exerciseDevices, type Rig } from './testing.js';

/** A deep copy through JSON, as a state file makes one. */
const viaJson = (s: MachineState): MachineState => JSON.parse(JSON.stringify(s)) as MachineState;

function setUp(): Rig {
  const r = buildRig();
  applyEntryState(r.cpu, { mode: 'protected32', rip: 0x100000, regs: { rax: 0x2badb002, rbx: 0x9000 } });
  exerciseDevices(r);
  return r;
}

describe('machine state', () => {
  it('is JSON data that survives JSON.stringify/parse, and restores to the same state', () => {
    const a = setUp();
    const state = saveMachine(a.built, a.cpu);
    expect(state.version).toBe(STATE_VERSION);
    const text = JSON.stringify(state);
    expect(text).not.toMatch(/undefined|NaN|Infinity/);
    const b = buildRig();
    restoreMachine(b.built, b.cpu, viaJson(state));
    expect(JSON.stringify(saveMachine(b.built, b.cpu))).toBe(text);
    expect(cpuFields(b.cpu)).toEqual(cpuFields(a.cpu));
  });

  const names = deviceSections(buildRig().built).map((s) => s.name);
  it('has a section for every device of the bt machine', () => {
    expect(names).toEqual(expect.arrayContaining([
      'uart', 'i8042', 'rtc', 'pit', 'acpi-pm', 'pvpanic', 'virtio-rng', 'virtio-net', 'virtio-console', 'virtio-blk0', 'pci-host', 'pic', 'ioapic', 'lapic',
    ]));
  });

  it.each(names)('%s: save, restore into a fresh machine, save again: equal', (name) => {
    const a = setUp();
    const state = viaJson(saveMachine(a.built, a.cpu));
    const b = buildRig();
    const before = JSON.stringify(deviceSections(b.built).find((s) => s.name === name)!.save());
    restoreMachine(b.built, b.cpu, state);
    const again = deviceSections(b.built).find((s) => s.name === name)!.save();
    expect(JSON.parse(JSON.stringify(again))).toEqual(state.devices[name]);
    // the exercise changed this device: the round trip carried something
    if (name !== 'virtio-net' && name !== 'virtio-console') expect(JSON.stringify(state.devices[name])).not.toBe(before);
  });

  it('devices behave the same after a restore: timers fire at the same machine times, interrupts arrive alike', () => {
    const a = setUp();
    const b = buildRig();
    restoreMachine(b.built, b.cpu, viaJson(saveMachine(a.built, a.cpu)));
    const ca = a.clock as FakeClock;
    const cb = b.clock as FakeClock;
    expect(cb.now).toBe(ca.now);
    for (let step = 0; step < 40; step++) {
      for (const [r, c] of [[a, ca], [b, cb]] as const) {
        c.now += 250_000; // 0.25 ms
        r.built.machine.timers.runDue();
        // the CPU takes whatever is deliverable, as at an instruction boundary
        if (r.built.lapic!.hasInterrupt()) r.built.lapic!.acknowledge();
        r.built.machine.mmio.write(0xfee0_00b0, 4, 0); // EOI
      }
      expect(JSON.stringify(saveMachine(b.built, b.cpu).devices)).toBe(JSON.stringify(saveMachine(a.built, a.cpu).devices));
    }
    // something did fire: the LAPIC timer's and the PIT's interrupts
    expect(a.built.lapic!.coalescedTicks + a.built.pit!.coalescedTicks).toBeGreaterThanOrEqual(0);
    expect(a.built.machine.timers.nextDeadline()).toBe(b.built.machine.timers.nextDeadline());
  });

  it('a one-shot LAPIC timer that fell due just before the save still interrupts after the restore', () => {
    const a = buildRig();
    const apic = (reg: number, v: number): void => a.built.machine.mmio.write(0xfee0_0000 + reg, 4, v);
    apic(0xf0, 0x1ff);
    apic(0x3e0, 0xb); // divide by 1
    apic(0x320, 0x40); // one-shot, vector 0x40
    apic(0x380, 10);
    (a.clock as FakeClock).now += 1_000_000; // due, not yet run
    const b = buildRig();
    restoreMachine(b.built, b.cpu, viaJson(saveMachine(a.built, a.cpu)));
    b.built.machine.timers.runDue();
    expect(b.built.lapic!.hasInterrupt()).toBe(true);
    expect(b.built.lapic!.acknowledge()).toBe(0x40);
  });

  it('the clock continues from the saved time (a HostClock too), and the TSC with it', async () => {
    const a = buildRig({ clock: new HostClock(), virtio: false });
    await new Promise((r) => setTimeout(r, 30));
    const state = saveMachine(a.built, a.cpu);
    const tsc = BigInt(state.cpu.msrs.find((m) => m.index === 0x10)!.data);
    await new Promise((r) => setTimeout(r, 60)); // the snapshot sits on disk
    const b = buildRig({ clock: new HostClock(), virtio: false });
    restoreMachine(b.built, b.cpu, viaJson(state));
    const now = b.built.machine.clock.nowNs();
    expect(now).toBeGreaterThanOrEqual(state.clockNs);
    expect(now - state.clockNs).toBeLessThan(40e6); // not the 60 ms it sat, nor b's own uptime
    const lo = b.cpu.readTsc();
    const after = (BigInt(b.cpu.scratchHi >>> 0) << 32n) | BigInt(lo >>> 0);
    expect(after >= tsc).toBe(true);
    expect(Number(after - tsc)).toBeLessThan(40e-3 * TSC_FREQUENCY_HZ);
  });
});

describe('restore refuses bad states before changing anything', () => {
  /** A state to corrupt, and a target machine whose state must stay as it was. */
  function attempt(corrupt: (s: MachineState & Record<string, unknown>) => void, target?: Rig): string {
    const a = setUp();
    const state = viaJson(saveMachine(a.built, a.cpu)) as MachineState & Record<string, unknown>;
    corrupt(state);
    const b = target ?? buildRig();
    applyEntryState(b.cpu, { mode: 'real16', rip: 0x7c00, regs: { rdx: 0x80 } });
    const before = JSON.stringify(saveMachine(b.built, b.cpu));
    const cpuBefore = cpuFields(b.cpu);
    const clockBefore = b.built.machine.clock.nowNs();
    let message = '';
    try {
      restoreMachine(b.built, b.cpu, state);
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      message = (e as Error).message;
    }
    expect(message).not.toBe('');
    expect(message).not.toContain('\n');
    expect(b.built.machine.clock.nowNs()).toBe(clockBefore);
    expect(cpuFields(b.cpu)).toEqual(cpuBefore);
    expect(JSON.stringify(saveMachine(b.built, b.cpu))).toBe(before);
    return message;
  }

  it.each<[string, (s: MachineState & Record<string, unknown>) => void, RegExp]>([
    ['another version', (s) => (s.version = 2), /version 2, this typevisor reads version 1/],
    ['no version', (s) => delete (s as Partial<MachineState>).version, /version unknown/],
    ['an unknown top-level field', (s) => (s.extra = 1), /field "extra"/],
    ['a missing clock', (s) => delete (s as Partial<MachineState>).clockNs, /state\.clockNs is missing/],
    ['a negative clock', (s) => (s.clockNs = -5), /state\.clockNs is -5/],
    ['devices not an object', (s) => (s.devices = [] as unknown as Record<string, unknown>), /state\.devices is an array/],
    ['a device missing', (s) => delete s.devices['virtio-net'], /this machine has virtio-net, which the snapshot lacks/],
    ['an extra device', (s) => (s.devices['virtio-blk1'] = s.devices['virtio-blk0']), /the snapshot has virtio-blk1, which this machine lacks/],
    ['application processors this machine lacks', (s) => (s.aps = [{ cpu: s.cpu, waitingSipi: false }]), /holds 2 vCPUs and this machine has 1/],
    ['application processors not a list', (s) => (s.aps = 5 as unknown as MachineState['aps']), /state\.aps is 5, not a list of vCPU states/],
    ['a missing register', (s) => delete (s.cpu.regs as Partial<MachineState['cpu']['regs']>).rax, /cpu\.regs\.rax is missing/],
    ['a register of the wrong type', (s) => ((s.cpu.regs as Record<string, unknown>).rbx = 5), /cpu\.regs\.rbx is 5, not a 64-bit value/],
    ['a register wider than 64 bits', (s) => (s.cpu.regs.rcx = '0x1ffffffffffffffff'), /cpu\.regs\.rcx/],
    ['upper-case hex', (s) => (s.cpu.regs.rcx = '0xABC'), /cpu\.regs\.rcx/],
    ['reserved RFLAGS bits', (s) => (s.cpu.regs.rflags = '0x8002'), /rflags .*reserved/],
    ['a non-canonical segment base', (s) => (s.cpu.sregs.fs.base = '0x800000000000'), /cpu\.sregs\.fs\.base is 0x800000000000, not a canonical address/],
    ['LMA without paging', (s) => (s.cpu.sregs.efer = '0x500'), /LMA/],
    ['an unknown CR4 bit', (s) => (s.cpu.sregs.cr4 = '0x400000'), /cr4/],
    ['an x2APIC-mode APIC', (s) => (s.cpu.sregs.apicBase = '0xfee00d00'), /apicBase/],
    ['a DPL of 4', (s) => (s.cpu.sregs.cs.dpl = 4), /cpu\.sregs\.cs\.dpl is 4, not an integer from 0 to 3/],
    ['seven x87 registers', (s) => s.cpu.fpu.fpr.pop(), /cpu\.fpu\.fpr is an array of 7, not an array of 8/],
    ['MXCSR reserved bits', (s) => (s.cpu.fpu.mxcsr = 0x11f80), /mxcsr/],
    ['an MSR the CPU does not model', (s) => s.cpu.msrs.push({ index: 0x1234, data: '0x0' }), /MSR 0x1234.*not an MSR this CPU models/],
    ['an MSR twice', (s) => s.cpu.msrs.push({ ...s.cpu.msrs[1]! }), /appears twice/],
    ['no TSC', (s) => (s.cpu.msrs = s.cpu.msrs.filter((m) => m.index !== 0x10)), /no TSC/],
    ['a bad PAT type', (s) => (s.cpu.msrs.find((m) => m.index === 0x277)!.data = '0x2'), /invalid memory type/],
    ['a non-canonical LSTAR', (s) => (s.cpu.msrs.find((m) => m.index === 0xc0000082)!.data = '0x8000000000000000'), /not a canonical address/],
    ['an events field of the wrong type', (s) => ((s.cpu.events as Record<string, unknown>).halted = 'yes'), /cpu\.events\.halted is the string "yes", not true or false/],
    ['an unknown device field', (s) => ((s.devices.uart as Record<string, unknown>).baud = 9600), /devices\.uart has a field "baud"/],
    ['a PIC IRR out of range', (s) => ((s.devices.pic as { master: { irr: number } }).master.irr = 300), /devices\.pic\.master\.irr is 300, not an integer from 0 to 255/],
    ['a LAPIC with 7 IRR words', (s) => (s.devices.lapic as { irr: number[] }).irr.pop(), /devices\.lapic\.irr is an array of 7/],
    ['a LAPIC divide configuration', (s) => ((s.devices.lapic as { divideConfig: number }).divideConfig = 4), /divideConfig/],
    ['an overfull UART FIFO', (s) => ((s.devices.uart as { rx: number[] }).rx = new Array(17).fill(1)), /devices\.uart\.rx is an array of 17/],
    ['a CMOS of 127 bytes', (s) => (s.devices.rtc as { cmos: number[] }).cmos.pop(), /devices\.rtc\.cmos/],
    ['a PIT in mode 6', (s) => ((s.devices.pit as { channels: { mode: number }[] }).channels[0]!.mode = 6), /devices\.pit\.channels\[0\]\.mode is 6/],
    ['the reset bit latched', (s) => ((s.devices['pci-host'] as { resetControl: number }).resetControl = 4), /resetControl/],
    ['another PCI device ID', (s) => ((s.devices['virtio-rng'] as { transport: { config: number[] } }).transport.config[2] = 0x41), /devices\.virtio-rng\.transport\.config\[0x2\] is 0x41/],
    ['a virtio function in another slot', (s) => ((s.devices['virtio-rng'] as { slot: number }).slot = 9), /slot is 9/],
    ['a feature not offered', (s) => ((s.devices['virtio-rng'] as { transport: { negotiated: string } }).transport.negotiated = '0x100000001'), /features the device does not offer/],
    ['a queue larger than the device allows', (s) => ((s.devices['virtio-rng'] as { transport: { queues: { size: number }[] } }).transport.queues[0]!.size = 128), /queues\[0\]\.size is 128/],
    ['a ready queue outside RAM', (s) => ((s.devices['virtio-rng'] as { transport: { queues: { descAddr: number }[] } }).transport.queues[0]!.descAddr = 0x4000_0000), /queues\[0\] is not a queue this machine's memory can hold: descriptor table at 0x40000000/],
    ['a vector the function does not have', (s) => ((s.devices['virtio-rng'] as { transport: { configVector: number } }).transport.configVector = 7), /configVector is 7/],
    ['MSI-X state contradicting config space', (s) => ((s.devices['virtio-rng'] as { transport: { msix: { enabled: boolean } } }).transport.msix.enabled = false), /disagrees with the MSI-X Message Control/],
    ['another disk size', (s) => ((s.devices['virtio-blk0'] as { device: { capacityBytes: number } }).device.capacityBytes = 512), /a disk of 512 bytes, this machine's has 1048576/],
    ['another MAC', (s) => ((s.devices['virtio-net'] as { device: { config: number[] } }).device.config[5] = 0x57), /MAC 52:54:00:12:34:57, this machine's card has 52:54:00:12:34:56/],
  ])('refuses %s', (_what, corrupt, message) => {
    expect(attempt(corrupt)).toMatch(message);
  });

  it('refuses a state that is not an object', () => {
    const b = buildRig();
    expect(() => restoreMachine(b.built, b.cpu, null as unknown as MachineState)).toThrow(SnapshotError);
    expect(() => restoreMachine(b.built, b.cpu, [] as unknown as MachineState)).toThrow(/not an object/);
  });

  it('refuses a machine without a settable clock', () => {
    const a = setUp();
    const state = viaJson(saveMachine(a.built, a.cpu));
    const b = buildRig({ clock: { nowNs: () => 5 } });
    expect(() => restoreMachine(b.built, b.cpu, state)).toThrow(/clock cannot be set/);
  });

  it('saving refuses while a disk request is in flight', () => {
    const a = setUp();
    const blk = a.built.virtioFunctions.find((f) => f.name === 'virtio-blk0')!.fn.device as BlockDevice;
    blk.inFlight = 1;
    expect(() => saveMachine(a.built, a.cpu)).toThrow(/virtio-blk0 has 1 disk requests in flight; pause the VM first/);
  });
});
