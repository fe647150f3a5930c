import { describe, expect, it } from 'vitest';
import { applyEntryState } from '../../cpu/system/entry.js';
import type { FakeClock } from '../../devices/testing/fake-clock.js';
import { btCpuidLookup, btCpuidTable, kvmCpuidLookup, missingFeatures, typevisorCpuid } from '../../kvm/cpu-model.js';
import { btStateFromKvm, kvmStateFromBt } from './cross-engine.js';
import { restoreMachine, saveMachine, type MachineState } from './state.js';
import { buildRig, exerciseDevices } from './testing.js';

const viaJson = <T>(s: T): T => JSON.parse(JSON.stringify(s)) as T;

/** A bt machine with every device exercised and a CPU with x87, SSE and debug state. */
function busyState(): MachineState {
  const r = buildRig();
  applyEntryState(r.cpu, { mode: 'protected32', rip: 0x100000, regs: { rax: 0x2badb002, rbx: 0x9000 } });
  exerciseDevices(r);
  (r.clock as FakeClock).now += 500_123; // the LAPIC timer a third of its period in
  r.built.machine.timers.runDue();
  const s = r.cpu.s;
  s.xmm.set([1, 2, 3, 4, -5, 6, 0x7fffffff, -1], 4);
  s.mxcsr = 0xbf80;
  s.fpuControl = 0x27f;
  s.dr[0] = 0x1234;
  s.dr[7] = 0x401;
  return viaJson(saveMachine(r.built, r.cpu));
}

describe('a snapshot moving between the engines', () => {
  it('bt → kvm → bt gives back the same CPU and devices (the PIT restarted, as KVM restarts it)', () => {
    const a = busyState();
    const k = kvmStateFromBt(a, btCpuidLookup());
    expect(k.tscRateMayChange).toBe(true);
    const b = viaJson(btStateFromKvm(k));
    expect(b.clockNs).toBe(a.clockNs);
    expect(b.cpu).toEqual(a.cpu);
    const { pit: pa, lapic: la, ...restA } = a.devices as Record<string, Record<string, unknown>>;
    const { pit: pb, lapic: lb, ...restB } = b.devices as Record<string, Record<string, unknown>>;
    // KVM's IOAPIC keeps no level for edge-triggered pins (the devices drive those lines again)
    const levelPins = (io: Record<string, unknown>): number => (io.redirection as number[]).reduce((m, v, i) => (i % 2 === 0 && v & (1 << 15) ? m | (1 << (i / 2)) : m), 0);
    const io = (x: Record<string, unknown>) => ({ ...x, levels: (x.levels as number) & levelPins(x) });
    expect(restA.ioapic!.levels).not.toBe(0);
    expect({ ...restB, ioapic: io(restB.ioapic!) }).toEqual({ ...restA, ioapic: io(restA.ioapic!) });
    // the local APIC: the same registers; the timer's start from its current count, to the tick
    expect({ ...lb, timerStartNs: 0, timerPending: false }).toEqual({ ...la, timerStartNs: 0, timerPending: false });
    expect(Math.abs((lb!.timerStartNs as number) - (la!.timerStartNs as number))).toBeLessThanOrEqual(16);
    // the PIT: same programming; counting from the restore
    const chans = (p: Record<string, unknown>) => (p.channels as Record<string, unknown>[]).map((c) => ({ ...c, startNs: 0, heldTicks: 0, nullCount: false }));
    expect(chans(pb!)).toEqual(chans(pa!));
    // and the bt engine takes it
    const r = buildRig();
    restoreMachine(r.built, r.cpu, b);
    expect(r.cpu.s.mxcsr).toBe(0xbf80);
  });

  it('refuses a guest offered more than the new engine has, naming the bits, or warns when allowed', () => {
    const a = busyState();
    const none = kvmCpuidLookup(new Uint8Array(8)); // a KVM that offers nothing
    expect(() => kvmStateFromBt(a, none)).toThrow(/^Cannot restore the bt snapshot on the kvm engine: the guest was offered CPU features this host's KVM lacks \(CPUID\.1:ECX bits 0, .*; restore it on the bt engine \(or with --allow-cpu-mismatch\)$/);
    const warnings: string[] = [];
    kvmStateFromBt(a, none, { allow: true, warn: (l) => warnings.push(l) });
    expect(warnings).toHaveLength(1);
  });

  it('refuses a kvm state caught delivering an event, or with several vCPUs, or in TSC-deadline mode', () => {
    const k = kvmStateFromBt(busyState(), btCpuidLookup());
    const ev = Buffer.from(k.vcpus[0]!.events, 'base64');
    ev[8] = 1; // interrupt.injected
    expect(() => btStateFromKvm({ ...k, vcpus: [{ ...k.vcpus[0]!, events: ev.toString('base64') }] })).toThrow(/KVM was in the middle of delivering an interrupt when it was taken; take the snapshot again/);
    expect(() => btStateFromKvm({ ...k, vcpus: [k.vcpus[0]!, k.vcpus[0]!] })).toThrow(/it has 2 vCPUs, and moves between the engines take one/);
    const page = Buffer.from(k.vcpus[0]!.lapic, 'base64');
    page.writeUInt32LE(0x40 | (2 << 17), 0x320);
    expect(() => btStateFromKvm({ ...k, vcpus: [{ ...k.vcpus[0]!, lapic: page.toString('base64') }] })).toThrow(/TSC-deadline mode/);
  });

  it('the typevisor CPU model under KVM offers no more than the bt CPU, and no more than the host', () => {
    const host = btCpuidTable();
    expect(missingFeatures(kvmCpuidLookup(typevisorCpuid(host)), btCpuidLookup())).toBe('');
    expect(missingFeatures(kvmCpuidLookup(typevisorCpuid(new Uint8Array(8))), kvmCpuidLookup(new Uint8Array(8)))).toBe('');
  });
});
