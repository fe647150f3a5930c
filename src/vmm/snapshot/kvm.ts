/**
 * A kvm-engine machine's state in the state file (`"engine": "kvm"`, field `kvm`), and its
 * validation on restore: the file is untrusted, so every field is checked here, in the main
 * thread, before any VM, thread or memory exists; the device sections are checked against the
 * freshly built machine in the device thread (kvm-devices.ts), before any vCPU runs.
 *
 *   {
 *     vm:      { picMaster, picSlave, ioapic, pit: base64 of KVM's structures, clockNs: "0x..." },
 *     vcpus:   [ KvmVcpuState, ... ]  (src/kvm/vcpu-state.ts: registers by name, KVM ABI blobs)
 *     devices: { clockNs, devices: { uart, rtc, "virtio-blk0", ... } }
 *   }
 *
 * Not the bt engine's MachineState: the interrupt controllers and the PIT are KVM's in-kernel
 * ones here, the bt engine's device models there. Registers use the same names as the bt
 * engine's CpuSnapshot, the first step to a snapshot that moves between the engines.
 */
import * as C from '../../kvm/constants.generated.js';
import type { KvmMachineSnapshot } from '../../kvm/lifecycle.js';
import { MAX_XCRS, REG_NAMES, SEGMENT_NAMES, SREG_VALUE_NAMES, type KvmVcpuState } from '../../kvm/vcpu-state.js';
import { IRQCHIP_STATE_SIZE } from '../../kvm/vm.js';
import { arr, b64, hex64, int, invalid, obj, parse, show, u16, u32, type Schema } from './check.js';

/** The JSON form of KvmMachineSnapshot. */
export interface KvmSnapshotState {
  vm: { picMaster: string; picSlave: string; ioapic: string; pit: string; clockNs: string };
  vcpus: KvmVcpuState[];
  devices: unknown;
}

const toB64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const fromB64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export function kvmStateToJson(s: KvmMachineSnapshot): KvmSnapshotState {
  return {
    vm: { picMaster: toB64(s.vm.picMaster), picSlave: toB64(s.vm.picSlave), ioapic: toB64(s.vm.ioapic), pit: toB64(s.vm.pit), clockNs: `0x${s.vm.clockNs.toString(16)}` },
    vcpus: s.vcpus,
    devices: s.devices,
  };
}

const bit = int(0, 1);
const segment = obj({ selector: u16, base: hex64, limit: u32, type: int(0, 15), present: bit, dpl: int(0, 3), db: bit, s: bit, l: bit, g: bit, avl: bit, unusable: bit });
const dtable = obj({ base: hex64, limit: u16 });
const regsFields: Record<string, Schema> = {};
for (const n of REG_NAMES) regsFields[n] = hex64;
const sregsFields: Record<string, Schema> = { gdt: dtable, idt: dtable, interruptBitmap: arr(hex64, 4) };
for (const n of SEGMENT_NAMES) sregsFields[n] = segment;
for (const n of SREG_VALUE_NAMES) sregsFields[n] = hex64;

/** Largest CPUID table / MSR list / XSAVE area a state file may carry. */
const MAX_CPUID_ENTRIES = 4096;
const MAX_MSRS = 4096;
const MAX_XSAVE = 1 << 20;
/** kvm_mp_state values x86 KVM knows (RUNNABLE .. SUSPENDED). */
const MAX_MP_STATE = 10;

const vcpuSchema = obj({
  regs: obj(regsFields),
  sregs: obj(sregsFields),
  mpState: int(0, MAX_MP_STATE),
  xsave: b64(C.KVM_XSAVE_SIZE, MAX_XSAVE),
  xcrs: arr(obj({ xcr: u32, value: hex64 }), 0, MAX_XCRS),
  msrs: arr(obj({ index: u32, data: hex64 }), 0, MAX_MSRS),
  lapic: b64(C.KVM_LAPIC_STATE_SIZE),
  events: b64(C.KVM_VCPU_EVENTS_SIZE),
  debugregs: b64(C.KVM_DEBUGREGS_SIZE),
  cpuid: b64(C.KVM_CPUID2_SIZE, C.KVM_CPUID2_SIZE + MAX_CPUID_ENTRIES * C.KVM_CPUID_ENTRY2_SIZE),
  tscKhz: int(1, 0xffff_ffff),
});

const stateSchema = (cpus: number): Schema => obj({
  vm: obj({ picMaster: b64(IRQCHIP_STATE_SIZE), picSlave: b64(IRQCHIP_STATE_SIZE), ioapic: b64(IRQCHIP_STATE_SIZE), pit: b64(C.KVM_PIT_STATE2_SIZE), clockNs: hex64 }),
  vcpus: arr(vcpuSchema, cpus),
  // checked against the machine in the device thread (kvm-devices.ts); `any` here
  devices: { t: 'obj', fields: {} },
});

/**
 * Check an untrusted `kvm` section for a machine of `cpus` vCPUs; returns the engine's form.
 * Throws SnapshotError naming the first bad field.
 */
export function parseKvmState(raw: unknown, cpus: number): KvmMachineSnapshot {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('kvm', `is ${show(raw)}, not the kvm engine's state (a corrupt state file)`);
  const r = raw as Record<string, unknown>;
  const vcpus = r.vcpus;
  if (Array.isArray(vcpus) && vcpus.length !== cpus) {
    throw invalid('kvm.vcpus', `holds ${vcpus.length} vCPUs, but the snapshot's configuration has ${cpus} (a corrupt state file)`);
  }
  // `devices` is the device thread's to check: here only that it is an object
  const devices = r.devices;
  if (typeof devices !== 'object' || devices === null || Array.isArray(devices)) throw invalid('kvm.devices', `is ${show(devices)}, not an object (a corrupt state file)`);
  const s = parse<KvmSnapshotState>(stateSchema(cpus), { ...r, devices: {} }, 'kvm');
  s.vcpus.forEach((v, i) => {
    const cpuid = fromB64(v.cpuid);
    const nent = new DataView(cpuid.buffer).getUint32(C.KVM_CPUID2_NENT, true);
    if ((cpuid.length - C.KVM_CPUID2_SIZE) % C.KVM_CPUID_ENTRY2_SIZE !== 0 || nent !== (cpuid.length - C.KVM_CPUID2_SIZE) / C.KVM_CPUID_ENTRY2_SIZE) {
      throw invalid(`kvm.vcpus[${i}].cpuid`, `is not a kvm_cpuid2 table (${cpuid.length} bytes, ${nent} entries)`);
    }
    if (v.xcrs.some((x, k) => v.xcrs.findIndex((y) => y.xcr === x.xcr) !== k)) throw invalid(`kvm.vcpus[${i}].xcrs`, 'names an XCR twice');
  });
  return {
    vm: { picMaster: fromB64(s.vm.picMaster), picSlave: fromB64(s.vm.picSlave), ioapic: fromB64(s.vm.ioapic), pit: fromB64(s.vm.pit), clockNs: BigInt(s.vm.clockNs) },
    vcpus: s.vcpus,
    devices: r.devices,
  };
}

/**
 * A state of `cpus` vCPUs with every field at its smallest valid value (zeros, one MSR): what
 * warmKvmStateCheck checks.
 */
export function minimalKvmState(cpus: number): KvmSnapshotState {
  const zeros = (n: number): string => toB64(new Uint8Array(n));
  const segment = { selector: 0, base: '0x0', limit: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
  const vcpu = (): KvmVcpuState => ({
    regs: Object.fromEntries(REG_NAMES.map((n) => [n, '0x0'])) as KvmVcpuState['regs'],
    sregs: {
      ...(Object.fromEntries([...SEGMENT_NAMES.map((n) => [n, { ...segment }]), ...SREG_VALUE_NAMES.map((n) => [n, '0x0'])]) as Omit<KvmVcpuState['sregs'], 'gdt' | 'idt' | 'interruptBitmap'>),
      gdt: { base: '0x0', limit: 0 },
      idt: { base: '0x0', limit: 0 },
      interruptBitmap: ['0x0', '0x0', '0x0', '0x0'],
    },
    mpState: 0,
    xsave: zeros(C.KVM_XSAVE_SIZE),
    xcrs: [{ xcr: 0, value: '0x1' }],
    msrs: [{ index: 0x10, data: '0x0' }],
    lapic: zeros(C.KVM_LAPIC_STATE_SIZE),
    events: zeros(C.KVM_VCPU_EVENTS_SIZE),
    debugregs: zeros(C.KVM_DEBUGREGS_SIZE),
    cpuid: zeros(C.KVM_CPUID2_SIZE), // nent 0
    tscKhz: 1,
  });
  return {
    vm: { picMaster: zeros(IRQCHIP_STATE_SIZE), picSlave: zeros(IRQCHIP_STATE_SIZE), ioapic: zeros(IRQCHIP_STATE_SIZE), pit: zeros(C.KVM_PIT_STATE2_SIZE), clockNs: '0x0' },
    vcpus: Array.from({ length: cpus }, vcpu),
    devices: {},
  };
}

/**
 * Check a minimal state once, through JSON as a state file brings it (Vm.preload, in a server
 * waiting for its first request). Why: the first run of this code pays for V8 compiling it,
 * ~2.3 ms (median of 11) on a restore's path to its first KVM_RUN; the check itself, warm,
 * ~0.3 ms. Never throws.
 */
export function warmKvmStateCheck(): void {
  try {
    parseKvmState(JSON.parse(JSON.stringify(minimalKvmState(1))), 1);
  } catch {
    // a failure shows where a real state is checked (kvm.test.ts checks this one passes)
  }
}
