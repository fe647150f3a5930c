/**
 * Extended control registers: XGETBV (0F 01 D0) and XSETBV (0F 01 D1). XCR0 selects the state
 * components XSAVE/XRSTOR handle (src/cpu/fpu/xsave.ts); this CPU supports x87 (bit 0) and SSE
 * (bit 1). XCR0 does not gate the SSE instructions themselves (CR4.OSFXSR does).
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Cr4, Mode, Reg, Vec } from '../state.js';
import { features } from '../features.js';

/** XCR0 bits this CPU supports: x87 and SSE. */
export const XCR0_SUPPORTED = 3;
/** Size of the standard-format XSAVE area for those components: the legacy region and the header. */
export const XSAVE_AREA_SIZE = 576;

/**
 * XGETBV: EDX:EAX ← XCR[ECX]. #UD unless CR4.OSXSAVE; ECX = 0 reads XCR0, ECX = 1 reads
 * XCR0 AND XINUSE (XINUSE reads as all ones here: see xsave.ts), any other ECX is #GP(0).
 * Allowed at any CPL.
 */
export function xgetbv(h: SystemHost): void {
  const s = h.s;
  const g = s.gpr;
  if (!features.xsave || !(s.cr4 & Cr4.OSXSAVE)) throw new CpuFault(Vec.UD);
  const ecx = g[2 * Reg.RCX]! >>> 0;
  if (ecx > 1) throw new CpuFault(Vec.GP, 0);
  g[2 * Reg.RAX] = s.xcr0;
  g[2 * Reg.RAX + 1] = 0;
  g[2 * Reg.RDX] = 0;
  g[2 * Reg.RDX + 1] = 0;
}

/**
 * XSETBV: XCR[ECX] ← EDX:EAX. #UD unless CR4.OSXSAVE; #GP(0) outside CPL 0 (V86 mode included),
 * for ECX ≠ 0 (XCR0 is the only writable XCR), and for a value with bit 0 (x87) clear or a bit
 * this CPU does not support (the rules about AVX, MPX and AVX-512 bits are covered by the
 * latter: none of those components exists).
 */
export function xsetbv(h: SystemHost): void {
  const s = h.s;
  const g = s.gpr;
  if (!features.xsave || !(s.cr4 & Cr4.OSXSAVE)) throw new CpuFault(Vec.UD);
  if (s.mode === Mode.V86 || (s.mode !== Mode.Real && s.cpl !== 0)) throw new CpuFault(Vec.GP, 0);
  const lo = g[2 * Reg.RAX]! >>> 0;
  const hi = g[2 * Reg.RDX]! >>> 0;
  if (g[2 * Reg.RCX] !== 0 || hi !== 0 || lo & ~XCR0_SUPPORTED || !(lo & 1)) throw new CpuFault(Vec.GP, 0);
  s.xcr0 = lo;
}
