/**
 * A snapshot taken under one engine, restored under the other: the kvm engine's state
 * (KvmMachineSnapshot: KVM's vCPU and in-kernel device structures, and our device models'
 * sections) to the bt engine's MachineState, and back.
 *
 * Guest RAM moves as it is. The devices both engines model alike (UART, RTC, i8042, ACPI PM,
 * pvpanic, the virtio functions, the PCI host) keep their sections; the PIC, IOAPIC, PIT and
 * local APICs change form (cross-irq.ts), and so do the vCPUs (cross-cpu.ts). Several vCPUs move
 * too: each one's registers and local APIC, and an application processor waiting for a STARTUP
 * IPI (the bt engine's `waitingSipi`) is KVM's INIT_RECEIVED (or, from KVM, UNINITIALIZED).
 *
 * Time: both engines continue the machine clock from the snapshot's, and the TSC from its saved
 * value; its rate is the engine's (the bt CPU's fixed rate, the host's under KVM unless KVM can
 * scale it). A guest that reads time through kvm-clock sees a continuous clock: on the way to
 * KVM its kvm-clock is set to the guest time the bt engine's pvclock gave; on the way to bt the
 * vCPUs keep KVM's time as an offset (kvmClockOffsetNs: bt time = TSC / rate + offset), and the
 * restore rewrites the pvclock structure KVM left with the bt CPU's scale.
 *
 * The input is untrusted. kvm → bt: the KVM state was checked by parseKvmState, and the result
 * goes through the bt engine's own checks (restoreMachine). bt → kvm: the bt sections this
 * module reads are checked first (parseCpu, parseInKernelSections); the rest is checked by the
 * kvm restore (its schema, the device thread, KVM's ioctls).
 */
import type { KvmMachineSnapshot } from '../../kvm/lifecycle.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { MSR_TSC } from '../../cpu/system/msr.js';
import { SnapshotError, invalid, show } from './check.js';
import { parseCpu } from './cpu.js';
import type { CpuidLookup } from '../../kvm/cpu-model.js';
import { cpuFromKvm, cpuToKvm, type CpuMismatch } from './cross-cpu.js';
import { ioapicFromKvm, ioapicToKvm, lapicFromKvm, lapicToKvm, picFromKvm, picToKvm, pitFromKvm, pitToKvm } from './cross-irq.js';
import { isInKernelSection, lapicSection, parseInKernelSections } from './devices.js';
import { MAX_VCPUS } from '../../kvm/control.js';
import { STATE_VERSION, type MachineState } from './state.js';

const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

/** The devices' part of a kvm snapshot: `{ clockNs, devices }` (kvm-devices.ts), checked for shape. */
function kvmDevices(raw: unknown): { clockNs: number; devices: Record<string, unknown> } {
  const r = raw as { clockNs?: unknown; devices?: unknown } | null;
  if (typeof r !== 'object' || r === null) throw invalid('kvm.devices', `is ${show(raw)}, not an object (a corrupt state file)`);
  if (typeof r.clockNs !== 'number' || !Number.isFinite(r.clockNs) || r.clockNs < 0 || r.clockNs > Number.MAX_SAFE_INTEGER) {
    throw invalid('kvm.devices.clockNs', `is ${show(r.clockNs)}, not a machine time in nanoseconds`);
  }
  const d = r.devices;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw invalid('kvm.devices.devices', `is ${show(d)}, not an object of device states`);
  for (const n of Object.keys(d)) {
    if (isInKernelSection(n)) throw invalid(`kvm.devices.devices.${n}`, 'is there, but KVM keeps that device in the kernel (a corrupt state file)');
  }
  return { clockNs: r.clockNs, devices: d as Record<string, unknown> };
}

/** The bt engine's state for a (checked) kvm snapshot. */
export function btStateFromKvm(k: KvmMachineSnapshot, cpuMismatch: CpuMismatch = {}): MachineState {
  if (k.vcpus.length === 0) throw new SnapshotError('Cannot restore the kvm snapshot on the bt engine: it holds no vCPU (a corrupt state file)');
  const { clockNs, devices } = kvmDevices(k.devices);
  const lapics: Record<string, unknown> = {};
  const kvmClockNs = Number(k.vm.clockNs);
  const vcpus = k.vcpus.map((v, i) => {
    const { cpu, nmiPending, waitingSipi } = cpuFromKvm(v, cpuMismatch, i, i === 0);
    // the kvm-clock continues from KVM's time, on the bt CPU's scale (pvclock.ts)
    const tsc = Number(BigInt(cpu.msrs.find((m) => m.index === MSR_TSC)?.data ?? '0x0'));
    const offset = Math.round(kvmClockNs - (tsc / TSC_FREQUENCY_HZ) * 1e9);
    if (Math.abs(offset) >= 1000) cpu.kvmClockOffsetNs = offset; // below a microsecond: rounding, none
    const apicBase = Number(BigInt(v.sregs.apicBase) & 0xffff_ffffn);
    lapics[lapicSection(i)] = lapicFromKvm(unb64(v.lapic), apicBase, nmiPending, clockNs);
    return { cpu, waitingSipi };
  });
  const state: MachineState = {
    version: STATE_VERSION,
    clockNs,
    cpu: vcpus[0]!.cpu,
    devices: {
      ...devices,
      pic: picFromKvm(k.vm.picMaster, k.vm.picSlave),
      ioapic: ioapicFromKvm(k.vm.ioapic),
      pit: pitFromKvm(k.vm.pit, clockNs),
      ...lapics,
    },
  };
  if (vcpus.length > 1) state.aps = vcpus.slice(1);
  return state;
}

/** The bt state's application processors (untrusted): each one's waitingSipi, checked for shape. */
function apsOf(raw: unknown): { cpu: unknown; waitingSipi: boolean }[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw invalid('machine.aps', `is ${show(raw)}, not a list of vCPU states (a corrupt state file)`);
  if (raw.length + 1 > MAX_VCPUS) throw invalid('machine.aps', `holds ${raw.length + 1} vCPUs, more than the kvm engine runs (${MAX_VCPUS})`);
  return raw.map((a: unknown, i) => {
    if (typeof a !== 'object' || a === null || typeof (a as { waitingSipi?: unknown }).waitingSipi !== 'boolean') {
      throw invalid(`machine.aps[${i}]`, `is ${show(a)}, not a vCPU state (cpu, waitingSipi) (a corrupt state file)`);
    }
    return a as { cpu: unknown; waitingSipi: boolean };
  });
}

/**
 * The kvm engine's state for a bt snapshot, on a host whose KVM offers the CPU features `host`
 * (KVM_GET_SUPPORTED_CPUID): the guest must find every feature the bt CPU offered it.
 */
export function kvmStateFromBt(raw: unknown, host: CpuidLookup, cpuMismatch: CpuMismatch = {}): KvmMachineSnapshot {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SnapshotError('Cannot restore the snapshot: its bt machine state is missing or not an object (a corrupt state file)');
  const m = raw as MachineState;
  if (m.version !== STATE_VERSION) throw invalid('machine.version', `is ${show(m.version)}, this typevisor reads version ${STATE_VERSION}`);
  if (typeof m.clockNs !== 'number' || !Number.isFinite(m.clockNs) || m.clockNs < 0 || m.clockNs > Number.MAX_SAFE_INTEGER) throw invalid('machine.clockNs', `is ${show(m.clockNs)}, not a machine time in nanoseconds`);
  const d = m.devices as unknown;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw invalid('machine.devices', `is ${show(d)}, not an object of device states`);
  const aps = apsOf(m.aps);
  const cpus = [{ cpu: m.cpu as unknown, waitingSipi: false }, ...aps].map((a, i) => ({ ...a, cpu: parseCpu(a.cpu, i === 0 ? 'machine.cpu' : `machine.aps[${i - 1}].cpu`) }));
  const irq = parseInKernelSections(m.devices, 'machine.devices', cpus.length);
  const rest: Record<string, unknown> = {};
  for (const [n, v] of Object.entries(m.devices)) if (!isInKernelSection(n)) rest[n] = v;
  const [picMaster, picSlave] = picToKvm(irq.pic);
  // the guest time the bt CPU's kvm-clock shows (TSC / the CPU's fixed rate, plus the offset of a
  // guest whose kvm-clock began under KVM)
  const boot = cpus[0]!.cpu;
  // (never before 0: the offset comes from the state file, checked only for its range)
  const kvmClockNs = BigInt(Math.max(0, Math.floor((boot.msr.tsc / TSC_FREQUENCY_HZ) * 1e9 + (boot.snap.kvmClockOffsetNs ?? 0))));
  const vcpus = cpus.map(({ cpu, waitingSipi }, i) => {
    const lapic = irq.lapics[i]!;
    return cpuToKvm(cpu.snap, lapicToKvm(lapic, m.clockNs), lapic.nmiPending, TSC_FREQUENCY_HZ / 1000, host, cpuMismatch, waitingSipi, i === 0);
  });
  return {
    vm: { picMaster, picSlave, ioapic: ioapicToKvm(irq.ioapic), pit: pitToKvm(irq.pit), clockNs: kvmClockNs },
    vcpus,
    devices: { clockNs: m.clockNs, devices: rest },
    tscRateMayChange: true,
  };
}
