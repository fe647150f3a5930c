/**
 * The CPU model a kvm vCPU shows its guest, as a kvm_cpuid2 table for KVM_SET_CPUID2:
 *
 *   host:       what this host's KVM supports (KVM_GET_SUPPORTED_CPUID), the default;
 *   typevisor:  the bt engine's CPU model (src/cpu/system/cpuid.ts), with every feature the
 *               host's KVM lacks taken out — the model a snapshot can move between the engines
 *               with (src/vmm/snapshot/cross-engine.ts), as Firecracker's CPU templates make
 *               snapshots movable between hosts.
 *
 * And the comparison a moving snapshot needs: the features one table offers and another lacks.
 */
import * as C from './constants.generated.js';
import { CpuState } from '../cpu/state.js';
import { cpuidLeaf } from '../cpu/system/cpuid.js';

export type CpuModel = 'host' | 'typevisor';

/** A feature register: leaf, subleaf, register index (EAX 0 .. EDX 3), and its bits' names. */
interface FeatureWord {
  leaf: number;
  sub: number;
  reg: number;
  /** Bits that follow the guest's own state (OSXSAVE, APIC enable, OSPKE) or say "a hypervisor". */
  ignore: number;
  what: string;
}
const FEATURE_WORDS: FeatureWord[] = [
  { leaf: 1, sub: 0, reg: 2, ignore: (1 << 27) | (1 << 31), what: 'CPUID.1:ECX' },
  { leaf: 1, sub: 0, reg: 3, ignore: 1 << 9, what: 'CPUID.1:EDX' },
  { leaf: 7, sub: 0, reg: 1, ignore: 0, what: 'CPUID.7.0:EBX' },
  { leaf: 7, sub: 0, reg: 2, ignore: 1 << 4, what: 'CPUID.7.0:ECX' },
  { leaf: 7, sub: 0, reg: 3, ignore: 0, what: 'CPUID.7.0:EDX' },
  { leaf: 0xd, sub: 0, reg: 0, ignore: 0, what: 'CPUID.0xD.0:EAX (XSAVE components)' },
  { leaf: 0xd, sub: 1, reg: 0, ignore: 0, what: 'CPUID.0xD.1:EAX' },
  { leaf: 0x8000_0001, sub: 0, reg: 2, ignore: 0, what: 'CPUID.80000001:ECX' },
  { leaf: 0x8000_0001, sub: 0, reg: 3, ignore: 0, what: 'CPUID.80000001:EDX' },
];
/** KVM's paravirtual features (kvm-clock): a feature word too when a table is limited to the host's. */
const KVM_FEATURES: FeatureWord = { leaf: 0x4000_0001, sub: 0, reg: 0, ignore: 0, what: 'CPUID.40000001:EAX' };
const REG_FIELDS = [C.KVM_CPUID_ENTRY2_EAX, C.KVM_CPUID_ENTRY2_EBX, C.KVM_CPUID_ENTRY2_ECX, C.KVM_CPUID_ENTRY2_EDX];

/** A CPUID table as a lookup: (leaf, subleaf) → four registers (zeros for a leaf it lacks). */
export type CpuidLookup = (leaf: number, sub: number) => Uint32Array;

/** A kvm_cpuid2 structure as a lookup (a leaf without KVM_CPUID_FLAG_SIGNIFCANT_INDEX answers every subleaf). */
export function kvmCpuidLookup(table: Uint8Array): CpuidLookup {
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const n = Math.min(dv.getUint32(C.KVM_CPUID2_NENT, true), Math.floor((table.length - C.KVM_CPUID2_SIZE) / C.KVM_CPUID_ENTRY2_SIZE));
  return (leaf, sub) => {
    const out = new Uint32Array(4);
    for (let i = 0; i < n; i++) {
      const e = C.KVM_CPUID2_ENTRIES + i * C.KVM_CPUID_ENTRY2_SIZE;
      if (dv.getUint32(e + C.KVM_CPUID_ENTRY2_FUNCTION, true) !== leaf) continue;
      const indexed = (dv.getUint32(e + C.KVM_CPUID_ENTRY2_FLAGS, true) & C.KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0;
      if (indexed && dv.getUint32(e + C.KVM_CPUID_ENTRY2_INDEX, true) !== sub) continue;
      REG_FIELDS.forEach((f, r) => (out[r] = dv.getUint32(e + f, true)));
      return out;
    }
    return out;
  };
}

/** The bt engine's CPU model (its CPUID as a fresh boot CPU answers it). */
export function btCpuidLookup(): CpuidLookup {
  const s = new CpuState();
  s.powerOn();
  return (leaf, sub) => {
    const out = new Uint32Array(4);
    cpuidLeaf(s, leaf, sub, out);
    return out;
  };
}

/** Names of CPUID feature bits `offered` has and `engine` lacks ("" when none). */
export function missingFeatures(offered: CpuidLookup, engine: CpuidLookup): string {
  const parts: string[] = [];
  for (const w of FEATURE_WORDS) {
    const lacking = (offered(w.leaf, w.sub)[w.reg]! & ~engine(w.leaf, w.sub)[w.reg]! & ~w.ignore) >>> 0;
    if (lacking) {
      const bits = [...Array(32).keys()].filter((b) => lacking & (2 ** b)).join(', ');
      parts.push(`${w.what} bit${bits.includes(',') ? 's' : ''} ${bits}`);
    }
  }
  return parts.join('; ');
}

/** Leaves the bt CPU answers with more than one subleaf, and how many subleaves they have. */
const INDEXED_LEAVES: Record<number, number> = { 4: 4, 7: 1, 0xb: 2, 0xd: 2 };

/** The bt CPU model as a kvm_cpuid2 table, for a vCPU that continues a bt guest under KVM. */
export function btCpuidTable(): Uint8Array {
  const cpu = btCpuidLookup();
  const entries: { leaf: number; sub: number; flags: number; regs: Uint32Array }[] = [];
  const range = (first: number): void => {
    const last = cpu(first, 0)[0]!;
    for (let leaf = first; leaf <= last && leaf - first < 0x40; leaf++) {
      const subs = INDEXED_LEAVES[leaf];
      if (subs === undefined) entries.push({ leaf, sub: 0, flags: 0, regs: cpu(leaf, 0) });
      else for (let sub = 0; sub < subs; sub++) entries.push({ leaf, sub, flags: C.KVM_CPUID_FLAG_SIGNIFCANT_INDEX, regs: cpu(leaf, sub) });
    }
  };
  range(0);
  range(0x4000_0000);
  range(0x8000_0000);
  const table = new Uint8Array(C.KVM_CPUID2_SIZE + entries.length * C.KVM_CPUID_ENTRY2_SIZE);
  const dv = new DataView(table.buffer);
  dv.setUint32(C.KVM_CPUID2_NENT, entries.length, true);
  entries.forEach((x, i) => {
    const e = C.KVM_CPUID2_ENTRIES + i * C.KVM_CPUID_ENTRY2_SIZE;
    dv.setUint32(e + C.KVM_CPUID_ENTRY2_FUNCTION, x.leaf, true);
    dv.setUint32(e + C.KVM_CPUID_ENTRY2_INDEX, x.sub, true);
    dv.setUint32(e + C.KVM_CPUID_ENTRY2_FLAGS, x.flags, true);
    REG_FIELDS.forEach((f, r) => dv.setUint32(e + f, x.regs[r]!, true));
  });
  return table;
}

/** The typevisor model limited to what `supported` (KVM_GET_SUPPORTED_CPUID) offers. */
export function typevisorCpuid(supported: Uint8Array): Uint8Array {
  const table = btCpuidTable();
  const host = kvmCpuidLookup(supported);
  const dv = new DataView(table.buffer);
  const n = dv.getUint32(C.KVM_CPUID2_NENT, true);
  for (let i = 0; i < n; i++) {
    const e = C.KVM_CPUID2_ENTRIES + i * C.KVM_CPUID_ENTRY2_SIZE;
    const leaf = dv.getUint32(e + C.KVM_CPUID_ENTRY2_FUNCTION, true);
    const sub = dv.getUint32(e + C.KVM_CPUID_ENTRY2_INDEX, true);
    for (const w of [...FEATURE_WORDS, KVM_FEATURES]) {
      if (w.leaf !== leaf || w.sub !== sub) continue;
      const at = e + REG_FIELDS[w.reg]!;
      dv.setUint32(at, (dv.getUint32(at, true) & (host(leaf, sub)[w.reg]! | w.ignore)) >>> 0, true);
    }
  }
  return table;
}
