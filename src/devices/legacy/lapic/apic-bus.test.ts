import { describe, expect, it } from 'vitest';
import { FakeTime } from '../../testing/fake-clock.js';
import { ApicBus, LapicWindow, type CpuStartHooks } from './apic-bus.js';
import { APIC_ICR_HIGH, APIC_ICR_LOW, APIC_ID, APIC_LDR, APIC_SVR, LocalApic } from './lapic.js';

/** Four APICs (IDs 0..3) on one bus, software-enabled; the start hooks recorded. */
function rig(n = 4): { lapics: LocalApic[]; bus: ApicBus; calls: string[]; send: (from: number, high: number, low: number) => void } {
  const { clock, timers } = new FakeTime();
  const lapics: LocalApic[] = [];
  const bus = new ApicBus(lapics);
  for (let i = 0; i < n; i++) lapics.push(new LocalApic({ clock, timers, id: i, bsp: i === 0, onIpi: (ipi) => bus.send(i, ipi) }));
  for (const a of lapics) a.write(APIC_SVR, 4, 0x1ff);
  const calls: string[] = [];
  const hooks: CpuStartHooks = {
    init: (v) => calls.push(`init ${v}`),
    startup: (v, vector) => calls.push(`startup ${v} ${vector.toString(16)}`),
    wake: () => calls.push('wake'),
  };
  bus.hooks = hooks;
  const send = (from: number, high: number, low: number): void => {
    lapics[from]!.write(APIC_ICR_HIGH, 4, high);
    lapics[from]!.write(APIC_ICR_LOW, 4, low);
  };
  return { lapics, bus, calls, send };
}

const pending = (a: LocalApic): number => (a.hasInterrupt() ? a.acknowledge() : -1);

describe('APIC bus', () => {
  it('delivers a fixed IPI to the APIC its physical destination names, and wakes the engine', () => {
    const { lapics, calls, send } = rig();
    send(0, 2 << 24, 0x4040);
    expect(lapics.map(pending)).toEqual([-1, -1, 0x40, -1]);
    expect(calls).toEqual(['wake']);
  });

  it('broadcasts to all but the sender, or to all with the self-including shorthand', () => {
    const { lapics, send } = rig();
    send(1, 0, 0xc4041); // all excluding self
    expect(lapics.map(pending)).toEqual([0x41, -1, 0x41, 0x41]);
    send(1, 0, 0x84052); // all including self (a higher priority class than the 0x41 in service)
    expect(lapics.map(pending)).toEqual([0x52, 0x52, 0x52, 0x52]);
  });

  it('matches logical destinations in the flat model, and gives a lowest-priority IPI to one APIC', () => {
    const { lapics, send } = rig();
    lapics.forEach((a, i) => a.write(APIC_LDR, 4, (1 << i) << 24));
    send(0, 0b1100 << 24, 0x4850); // logical, fixed: APICs 2 and 3
    expect(lapics.map(pending)).toEqual([-1, -1, 0x50, 0x50]);
    send(0, 0b1110 << 24, 0x4951); // logical, lowest priority: one of 1..3
    expect(lapics.map(pending).filter((v) => v === 0x51)).toHaveLength(1);
  });

  it('passes NMIs, INIT (not its level de-assert) and STARTUP to the APICs and CPUs named', () => {
    const { lapics, calls, send } = rig();
    send(0, 3 << 24, 0x4400); // NMI to APIC 3
    expect(lapics[3]!.takeNmi()).toBe(true);
    expect(lapics[1]!.takeNmi()).toBe(false);
    calls.length = 0;
    send(0, 0, 0xc4500); // INIT assert, all excluding self
    send(0, 0, 0xc8500); // INIT level de-assert: nothing
    send(0, 1 << 24, 0x4608); // STARTUP vector 8 to APIC 1
    expect(calls).toEqual(['init 1', 'init 2', 'init 3', 'wake', 'wake', 'startup 1 8', 'wake']);
  });

  it('counts an IPI whose destination names no APIC as dropped', () => {
    const { bus, calls, send } = rig(2);
    send(0, 7 << 24, 0x4040);
    expect(bus.droppedCount).toBe(1);
    expect(calls).toEqual([]);
  });

  it('shows each vCPU its own APIC through the one register page', () => {
    const { lapics } = rig(3);
    const window = new LapicWindow(lapics);
    window.select(2);
    expect(window.read(APIC_ID, 4) >>> 24).toBe(2);
    window.select(0);
    expect(window.read(APIC_ID, 4) >>> 24).toBe(0);
  });
});
