/**
 * A snapshot taken under one engine, restored under the other: the kvm engine's state
 * (KvmMachineSnapshot: KVM's vCPU and in-kernel device structures, and our device models'
 * sections) to the bt engine's MachineState, and back.
 *
 * Guest RAM moves as it is. The devices both engines model alike (UART, RTC, i8042, ACPI PM,
 * pvpanic, the virtio functions, the PCI host) keep their sections; the PIC, IOAPIC, PIT and
 * local APIC change form (cross-irq.ts), and so does the vCPU (cross-cpu.ts). One vCPU only:
 * several (each one's APIC, the application processors' wait-for-SIPI state) do not move yet.
 *
 * Time: both engines continue the machine clock from the snapshot's, and the TSC from its saved
 * value; its rate is the engine's (the bt CPU's fixed rate, the host's under KVM unless KVM can
 * scale it). A guest that reads time through kvm-clock sees a continuous clock: on the way to
 * KVM its kvm-clock is set to the guest time the bt engine's pvclock gave (TSC / rate).
 *
 * The input is untrusted. kvm → bt: the KVM state was checked by parseKvmState, and the result
 * goes through the bt engine's own checks (restoreMachine). bt → kvm: the bt sections this
 * module reads are checked first (parseCpu, parseInKernelSections); the rest is checked by the
 * kvm restore (its schema, the device thread, KVM's ioctls).
 */
import type { KvmMachineSnapshot } from '../../kvm/lifecycle.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { SnapshotError, invalid, show } from './check.js';
import { parseCpu } from './cpu.js';
import type { CpuidLookup } from '../../kvm/cpu-model.js';
import { cpuFromKvm, cpuToKvm, type CpuMismatch } from './cross-cpu.js';
import { ioapicFromKvm, ioapicToKvm, lapicFromKvm, lapicToKvm, picFromKvm, picToKvm, pitFromKvm, pitToKvm } from './cross-irq.js';
import { IN_KERNEL_SECTIONS, parseInKernelSections } from './devices.js';
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
  for (const n of IN_KERNEL_SECTIONS) {
    if (n in d) throw invalid(`kvm.devices.devices.${n}`, 'is there, but KVM keeps that device in the kernel (a corrupt state file)');
  }
  return { clockNs: r.clockNs, devices: d as Record<string, unknown> };
}

/** The bt engine's state for a (checked) kvm snapshot of one vCPU. */
export function btStateFromKvm(k: KvmMachineSnapshot, cpuMismatch: CpuMismatch = {}): MachineState {
  if (k.vcpus.length !== 1) throw new SnapshotError(`Cannot restore the kvm snapshot on the bt engine: it has ${k.vcpus.length} vCPUs, and moves between the engines take one; restore it on the kvm engine`);
  const v = k.vcpus[0]!;
  const { clockNs, devices } = kvmDevices(k.devices);
  const { cpu, nmiPending } = cpuFromKvm(v, cpuMismatch);
  const apicBase = Number(BigInt(v.sregs.apicBase) & 0xffff_ffffn);
  return {
    version: STATE_VERSION,
    clockNs,
    cpu,
    devices: {
      ...devices,
      pic: picFromKvm(k.vm.picMaster, k.vm.picSlave),
      ioapic: ioapicFromKvm(k.vm.ioapic),
      pit: pitFromKvm(k.vm.pit, clockNs),
      lapic: lapicFromKvm(unb64(v.lapic), apicBase, nmiPending, clockNs),
    },
  };
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
  if (Array.isArray(m.aps) && m.aps.length > 0) throw new SnapshotError(`Cannot restore the bt snapshot on the kvm engine: it has ${m.aps.length + 1} vCPUs, and moves between the engines take one; restore it on the bt engine`);
  const cpu = parseCpu(m.cpu, 'machine.cpu');
  const irq = parseInKernelSections(m.devices, 'machine.devices');
  const rest: Record<string, unknown> = { ...m.devices };
  for (const n of IN_KERNEL_SECTIONS) delete rest[n];
  const [picMaster, picSlave] = picToKvm(irq.pic);
  // the guest time the bt CPU's kvm-clock shows (TSC 0 = time 0, at the CPU's fixed rate)
  const kvmClockNs = BigInt(Math.floor((cpu.msr.tsc / TSC_FREQUENCY_HZ) * 1e9));
  const vcpu = cpuToKvm(cpu.snap, lapicToKvm(irq.lapic, m.clockNs), irq.lapic.nmiPending, TSC_FREQUENCY_HZ / 1000, host, cpuMismatch);
  return {
    vm: { picMaster, picSlave, ioapic: ioapicToKvm(irq.ioapic), pit: pitToKvm(irq.pit), clockNs: kvmClockNs },
    vcpus: [vcpu],
    devices: { clockNs: m.clockNs, devices: rest },
    tscRateMayChange: true,
  };
}
