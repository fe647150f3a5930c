import { describe, expect, it } from 'vitest';
import { applyEntryState } from '../../cpu/system/entry.js';
import type { FakeClock } from '../../devices/testing/fake-clock.js';
import { btCpuidLookup, btCpuidTable, kvmCpuidLookup, missingFeatures, typevisorCpuid } from '../../kvm/cpu-model.js';
import * as C from '../../kvm/constants.generated.js';
import { btStateFromKvm, kvmStateFromBt } from './cross-engine.js';
import { restoreMachine, saveMachine, type MachineState } from './state.js';
import { buildRig, copyRam, exerciseDevices } from './testing.js';
import { writeMsr } from '../../cpu/system/msr.js';
import { MSR_KVM_SYSTEM_TIME_NEW } from '../../cpu/system/pvclock.js';

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

  it('a kvm-clock moved from KVM continues from KVM\'s time on the bt CPU\'s scale, and goes back to KVM where it got to', () => {
    const PAGE = 0x5000;
    const r = buildRig({ virtio: false });
    applyEntryState(r.cpu, { mode: 'protected32', rip: 0x100000, regs: {} });
    writeMsr(r.cpu, MSR_KVM_SYSTEM_TIME_NEW, PAGE | 1, 0); // the guest registers its kvm-clock
    const k = kvmStateFromBt(viaJson(saveMachine(r.built, r.cpu)), btCpuidLookup());
    // as a KVM that ran this guest for 7 s of kvm-clock on a 4 GHz TSC would have left it
    const tscSave = Number(BigInt(k.vcpus[0]!.msrs.find((m) => m.index === 0x10)!.data));
    k.vm.clockNs = 7_000_000_000n;
    const b = viaJson(btStateFromKvm(k));
    expect(b.cpu.kvmClockOffsetNs).toBe(Math.round(7e9 - tscSave / 2));

    const r2 = buildRig({ virtio: false });
    copyRam(r.memory, r2.memory);
    const page = (): DataView => new DataView(r2.memory.slice(PAGE, 32).slice().buffer);
    const kvmPage = new DataView(new ArrayBuffer(32));
    kvmPage.setUint32(0, 4, true); // version
    kvmPage.setBigUint64(8, BigInt(tscSave), true);
    kvmPage.setBigUint64(16, 7_000_000_000n, true);
    kvmPage.setUint32(24, 0x4000_0000, true); // 0.25 ns a tick
    kvmPage.setInt8(28, 0);
    r2.memory.writeBytes(PAGE, new Uint8Array(kvmPage.buffer));
    restoreMachine(r2.built, r2.cpu, b);
    /** The time the guest reads from its pvclock structure now. */
    const guestNs = (): number => {
      const p = page();
      expect(p.getUint32(0, true) & 1).toBe(0);
      const tsc = r2.cpu.readTsc() + r2.cpu.scratchHi * 2 ** 32;
      return Number(p.getBigUint64(16, true)) + ((tsc - Number(p.getBigUint64(8, true))) * p.getUint32(24, true)) / 2 ** 32;
    };
    expect(page().getUint32(24, true)).toBe(0x8000_0000); // the bt CPU's 2 GHz: 0.5 ns a tick
    expect(Math.abs(guestNs() - 7e9)).toBeLessThan(1000);
    (r2.clock as FakeClock).now += 2e9;
    expect(Math.abs(guestNs() - 9e9)).toBeLessThan(1000);
    // and back to KVM: its kvm-clock starts where the guest's time got to
    const a2 = viaJson(saveMachine(r2.built, r2.cpu));
    expect(a2.cpu.kvmClockOffsetNs).toBe(b.cpu.kvmClockOffsetNs);
    expect(Math.abs(Number(kvmStateFromBt(a2, btCpuidLookup()).vm.clockNs) - 9e9)).toBeLessThan(1000);
  });

  it('refuses a guest offered more than the new engine has, naming the bits, or warns when allowed', () => {
    const a = busyState();
    const none = kvmCpuidLookup(new Uint8Array(8)); // a KVM that offers nothing
    expect(() => kvmStateFromBt(a, none)).toThrow(/^Cannot restore the bt snapshot on the kvm engine: the guest was offered CPU features this host's KVM lacks \(CPUID\.1:ECX bits 0, .*; restore it on the bt engine \(or with --allow-cpu-mismatch\)$/);
    const warnings: string[] = [];
    kvmStateFromBt(a, none, { allow: true, warn: (l) => warnings.push(l) });
    expect(warnings).toHaveLength(1);
  });

  it('several vCPUs: each one\'s registers and local APIC, and an AP waiting for STARTUP, go bt → kvm → bt', () => {
    const r = buildRig({ cpus: 3, virtio: false });
    applyEntryState(r.cpu, { mode: 'protected32', rip: 0x100000, regs: { rax: 1 } });
    const [running] = r.aps;
    running!.waitingSipi = false;
    applyEntryState(running!.cpu, { mode: 'real16', rip: 0x8000, realCs: 0x800, regs: { rbx: 0x1234 } });
    running!.cpu.s.halted = true;
    // vCPU 1's APIC: its timer running, a vector accepted; vCPU 2's untouched
    const apic1 = r.built.lapics[1]!;
    apic1.write(0x3e0, 4, 0xb); // divide by 1
    apic1.write(0x320, 4, 0x41 | (1 << 17)); // periodic, vector 0x41
    apic1.write(0x380, 4, 1_000_000);
    apic1.acceptInterrupt(0x51, 0, false);
    const a = viaJson(saveMachine(r.built, r.cpu, r.aps));
    const k = kvmStateFromBt(a, btCpuidLookup());
    expect(k.vcpus.map((v) => v.mpState)).toEqual([C.KVM_MP_STATE_RUNNABLE, C.KVM_MP_STATE_HALTED, C.KVM_MP_STATE_INIT_RECEIVED]);
    const b = viaJson(btStateFromKvm(k));
    expect(b.aps).toEqual(a.aps);
    expect(b.aps!.map((x) => x.waitingSipi)).toEqual([false, true]);
    const devs = (m: MachineState, n: string) => ({ ...(m.devices[n] as Record<string, unknown>), timerStartNs: 0, timerPending: false });
    for (const n of ['lapic', 'lapic1', 'lapic2']) expect(devs(b, n)).toEqual(devs(a, n));
    expect((b.devices.lapic1 as { irr: number[] }).irr).not.toEqual((b.devices.lapic2 as { irr: number[] }).irr);
    // and a bt machine of three vCPUs takes it
    const r2 = buildRig({ cpus: 3, virtio: false });
    restoreMachine(r2.built, r2.cpu, b, r2.aps);
    expect(r2.aps.map((x) => x.waitingSipi)).toEqual([false, true]);
    expect(r2.aps[0]!.cpu.s.halted).toBe(true);
  });

  it('refuses a kvm state caught delivering an event or a STARTUP, or in TSC-deadline mode', () => {
    const k = kvmStateFromBt(busyState(), btCpuidLookup());
    const ev = Buffer.from(k.vcpus[0]!.events, 'base64');
    ev[8] = 1; // interrupt.injected
    expect(() => btStateFromKvm({ ...k, vcpus: [{ ...k.vcpus[0]!, events: ev.toString('base64') }] })).toThrow(/KVM was in the middle of delivering an interrupt when it was taken; take the snapshot again/);
    expect(() => btStateFromKvm({ ...k, vcpus: [k.vcpus[0]!, { ...k.vcpus[0]!, mpState: C.KVM_MP_STATE_SIPI_RECEIVED }] })).toThrow(/KVM had just delivered a STARTUP IPI to vCPU 1 when it was taken; take the snapshot again/);
    expect(() => btStateFromKvm({ ...k, vcpus: [{ ...k.vcpus[0]!, mpState: C.KVM_MP_STATE_INIT_RECEIVED }] })).toThrow(/its boot vCPU waits for INIT\/SIPI/);
    const two = kvmStateFromBt(busyState(), btCpuidLookup());
    expect(() => kvmStateFromBt({ ...busyState(), aps: [{ cpu: busyState().cpu, waitingSipi: 'no' }] }, btCpuidLookup())).toThrow(/machine\.aps\[0\] is .*not a vCPU state/);
    expect(two.vcpus).toHaveLength(1);
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
