/**
 * CPUID: the CPU model the guest sees.
 *
 * Vendor GenuineIntel, family 6 model 0x1c (Atom "Bonnell") stepping 10. The model is chosen
 * on purpose: Linux's cpu_vuln_whitelist lists it as NO_SPECULATION, so the kernel enables no
 * speculative-execution mitigations (no page-table isolation, no VERW on return to user, no
 * IBRS/retpoline fixups) — each of which would only cost time on a software CPU that does not
 * speculate. Stepping > 2 avoids the Atom PSE erratum workaround. No architectural PMU (leaf
 * 0xa = 0): Linux falls back to software perf events.
 *
 * Optional features follow src/cpu/features.ts. Not advertised: x2APIC, TSC-deadline, XSAVEC,
 * XSAVES, AVX, PCID, MONITOR/MWAIT (unless enabled), VMX, arch PMU.
 */
import type { SystemHost } from '../system-api.js';
import { Cr4, Reg, type CpuState } from '../state.js';
import { XCR0_SUPPORTED, XSAVE_AREA_SIZE } from './xcr.js';
import { features } from '../features.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { MAX_LIN_BITS, MAX_PHYS_BITS } from './paging.js';

export const CPUID_VENDOR = 'GenuineIntel';
export const CPUID_BRAND = 'typevisor virtual CPU';
/** Family 6, model 0x1c (ext model 1, model 0xc), stepping 10. */
export const CPUID_SIGNATURE = 0x000106ca;
/** Core crystal clock reported in leaf 0x15 (Linux also derives the LAPIC timer rate from it). */
export const TSC_CRYSTAL_HZ = 25_000_000;

const apicIds = new WeakMap<CpuState, number>();

/** Set the initial APIC ID reported in CPUID.1:EBX[31:24] (default 0, the BSP). */
export function setCpuidApicId(s: CpuState, id: number): void {
  apicIds.set(s, id & 0xff);
}

/** Four little-endian dwords of ASCII text starting at byte `off` (zero padded). */
function textDwords(text: string, off: number, out: Uint32Array): void {
  for (let i = 0; i < 4; i++) {
    let v = 0;
    for (let b = 3; b >= 0; b--) v = (v << 8) | (text.charCodeAt(off + i * 4 + b) & 0xff || 0);
    out[i] = v >>> 0;
  }
}

// Leaf 1 EDX baseline.
const EDX1_BASE =
  (1 << 0) | // FPU
  (1 << 2) | // DE
  (1 << 3) | // PSE
  (1 << 4) | // TSC
  (1 << 5) | // MSR
  (1 << 6) | // PAE
  (1 << 8) | // CX8
  (1 << 9) | // APIC
  (1 << 12) | // MTRR
  (1 << 13) | // PGE
  (1 << 15) | // CMOV
  (1 << 16) | // PAT
  (1 << 17) | // PSE36
  (1 << 19) | // CLFSH
  (1 << 23) | // MMX
  (1 << 24) | // FXSR
  (1 << 25) | // SSE
  (1 << 26); // SSE2
const ECX1_HYPERVISOR = 1 << 31;
/** IA32_APIC_BASE.EN: CPUID.1:EDX.APIC follows it. */
const APIC_BASE_EN = 1 << 11;

/** CPUID.(EAX=0DH,ECX=1):EAX — XSAVEOPT, and XGETBV with ECX = 1 (no XSAVEC, no XSAVES). */
const XSAVEOPT = 1 << 0;
const XGETBV_ECX1 = 1 << 2;

const EDX_EXT_BASE = (1 << 11) | (1 << 20) | (1 << 29); // SYSCALL, NX, LM
const ECX_EXT_BASE = 1 << 0; // LAHF/SAHF in 64-bit mode

const regs = new Uint32Array(4);

/** KVM paravirtual interface leaves (Documentation/virt/kvm/x86/cpuid.rst). */
const KVM_CPUID_SIGNATURE = 0x40000000;
const KVM_CPUID_FEATURES = 0x40000001;
const KVM_FEATURE_CLOCKSOURCE2 = 1 << 3;
const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 1 << 24;

/** Compute the leaf into `out` = [EAX, EBX, ECX, EDX]. */
export function cpuidLeaf(s: CpuState, leaf: number, sub: number, out: Uint32Array): void {
  out.fill(0);
  const maxBasic = features.tscLeaf15 ? 0x16 : 0xd;
  leaf >>>= 0;
  switch (leaf) {
    case 0:
      out[0] = maxBasic;
      textDwords(CPUID_VENDOR, 0, regs);
      out[1] = regs[0]!; // "Genu"
      out[3] = regs[1]!; // "ineI"
      out[2] = regs[2]!; // "ntel"
      return;
    case 1: {
      out[0] = CPUID_SIGNATURE;
      out[1] = (((apicIds.get(s) ?? 0) << 24) | (1 << 16) | (8 << 8)) >>> 0;
      let ecx = ECX1_HYPERVISOR;
      if (features.sse3) ecx |= 1 << 0;
      if (features.monitor) ecx |= 1 << 3;
      if (features.ssse3) ecx |= 1 << 9;
      if (features.cx16) ecx |= 1 << 13;
      if (features.sse41) ecx |= 1 << 19;
      if (features.sse42) ecx |= 1 << 20;
      if (features.movbe) ecx |= 1 << 22;
      if (features.popcnt) ecx |= 1 << 23;
      if (features.xsave) {
        ecx |= 1 << 26; // XSAVE
        if (s.cr4 & Cr4.OSXSAVE) ecx |= 1 << 27; // OSXSAVE: follows CR4
      }
      out[2] = ecx >>> 0;
      let edx = EDX1_BASE;
      if ((s.apicBase & APIC_BASE_EN) === 0) edx &= ~(1 << 9); // the APIC is globally disabled
      if (features.mca) edx |= (1 << 7) | (1 << 14);
      if (features.sep) edx |= 1 << 11;
      out[3] = edx >>> 0;
      return;
    }
    case 2:
      out[0] = 1; // one iteration, no descriptors
      return;
    case 7:
      if (sub === 0) {
        let ebx = 0;
        if (features.fsgsbase) ebx |= 1 << 0;
        if (features.bmi1) ebx |= 1 << 3;
        if (features.smep) ebx |= 1 << 7;
        if (features.bmi2) ebx |= 1 << 8;
        if (features.erms) ebx |= 1 << 9;
        if (features.clflushopt) ebx |= 1 << 23;
        if (features.clwb) ebx |= 1 << 24;
        if (features.smap) ebx |= 1 << 20;
        out[1] = ebx >>> 0;
        let ecx = 0;
        if (features.umip) ecx |= 1 << 2;
        if (features.rdpid) ecx |= 1 << 22;
        out[2] = ecx >>> 0;
      }
      return;
    case 0xd: // XSAVE state components (x87 and SSE only)
      if (!features.xsave) return;
      if (sub === 0) {
        out[0] = XCR0_SUPPORTED;
        out[1] = XSAVE_AREA_SIZE; // for the current XCR0: x87 and SSE both live in the first 576 bytes
        out[2] = XSAVE_AREA_SIZE; // for every supported component
      } else if (sub === 1) {
        out[0] = XSAVEOPT | XGETBV_ECX1;
      }
      return; // sub-leaves 2.. describe components 2..62: none exists
    case 0x15:
      if (features.tscLeaf15) {
        out[0] = 1;
        out[1] = Math.round(TSC_FREQUENCY_HZ / TSC_CRYSTAL_HZ);
        out[2] = TSC_CRYSTAL_HZ;
      }
      return;
    case 0x16:
      if (features.tscLeaf15) {
        out[0] = Math.round(TSC_FREQUENCY_HZ / 1e6);
        out[1] = out[0];
        out[2] = Math.round(TSC_CRYSTAL_HZ / 1e6);
      }
      return;
    case 0x80000000:
      out[0] = 0x80000008;
      return;
    case 0x80000001: {
      let ecx = ECX_EXT_BASE;
      if (features.lzcnt) ecx |= 1 << 5;
      out[2] = ecx >>> 0;
      let edx = EDX_EXT_BASE;
      if (features.rdtscp) edx |= 1 << 27;
      out[3] = edx >>> 0;
      return;
    }
    case 0x80000002:
    case 0x80000003:
    case 0x80000004:
      textDwords(CPUID_BRAND, (leaf - 0x80000002) * 16, regs);
      out.set(regs);
      return;
    case 0x80000006:
      out[2] = 0x01006040; // L2: 256 KiB, 8-way, 64-byte lines
      return;
    case 0x80000007:
      out[3] = 1 << 8; // invariant TSC: derived from the host monotonic clock
      return;
    case 0x80000008:
      out[0] = (MAX_LIN_BITS << 8) | MAX_PHYS_BITS;
      return;
    case KVM_CPUID_SIGNATURE:
      if (features.kvmClock) {
        out[0] = KVM_CPUID_FEATURES;
        textDwords('KVMKVMKVM\0\0\0', 0, regs);
        out[1] = regs[0]!;
        out[2] = regs[1]!;
        out[3] = regs[2]!;
      }
      return;
    case KVM_CPUID_FEATURES:
      if (features.kvmClock) out[0] = KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT;
      return;
    default:
      return; // leaves 3..0xd we do not describe, and unknown leaves: all zero
  }
}

const out4 = new Uint32Array(4);

/** CPUID: EAX (leaf) and ECX (subleaf) in; EAX, EBX, ECX, EDX out (upper halves cleared). */
export function cpuid(h: SystemHost): void {
  const g = h.s.gpr;
  cpuidLeaf(h.s, g[2 * Reg.RAX]! >>> 0, g[2 * Reg.RCX]! >>> 0, out4);
  g[2 * Reg.RAX] = out4[0]! | 0;
  g[2 * Reg.RBX] = out4[1]! | 0;
  g[2 * Reg.RCX] = out4[2]! | 0;
  g[2 * Reg.RDX] = out4[3]! | 0;
  g[2 * Reg.RAX + 1] = 0;
  g[2 * Reg.RBX + 1] = 0;
  g[2 * Reg.RCX + 1] = 0;
  g[2 * Reg.RDX + 1] = 0;
}
