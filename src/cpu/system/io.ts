/**
 * I/O permission: IN/OUT/INS/OUTS are allowed when CPL <= IOPL (protected mode, not V86);
 * otherwise every bit for the accessed ports in the TSS I/O permission bitmap must be clear.
 * A missing bitmap (offset beyond the TSS limit) denies access. Denial is #GP(0).
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Mode, Vec } from '../state.js';
import { SYS_TSS_AVAIL, SYS_TSS_BUSY } from './descriptor.js';

/** Offset of the 16-bit I/O map base in a 32/64-bit TSS. */
const TSS_IOMAP_BASE = 0x66;

export function checkIo(h: SystemHost, port: number, size: 1 | 2 | 4): void {
  const s = h.s;
  if (s.mode === Mode.Real) return;
  if (s.mode !== Mode.V86 && s.cpl <= ((h.getRflags() >>> 12) & 3)) return;
  const type = s.trAttr & 0x1f;
  if ((type !== SYS_TSS_AVAIL && type !== SYS_TSS_BUSY) || s.trLimit < TSS_IOMAP_BASE + 1) throw new CpuFault(Vec.GP, 0);
  const mapBase = h.readLin16(s.trBase + TSS_IOMAP_BASE, true);
  const p = port & 0xffff;
  const off = mapBase + (p >>> 3);
  if (off + 1 > s.trLimit) throw new CpuFault(Vec.GP, 0);
  const bits = h.readLin16(s.trBase + off, true);
  const mask = ((1 << size) - 1) << (p & 7);
  if (bits & mask) throw new CpuFault(Vec.GP, 0);
}
