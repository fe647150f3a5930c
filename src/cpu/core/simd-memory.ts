/**
 * The SIMD unit's view of memory (SimdMemory): the CPU's linear accesses at the current
 * privilege, with its paging and permissions, and its way of raising faults and setting flags.
 */
import { CpuFault } from '../system-api.js';
import type { SimdMemory } from '../simd-api.js';
import type { Cpu } from './cpu.js';

export function simdMemoryOf(c: Cpu): SimdMemory {
  return {
    read8: (lin) => c.read8(lin),
    read16: (lin) => c.read16(lin),
    read32: (lin) => c.read32(lin),
    write8: (lin, v) => c.write8(lin, v),
    write16: (lin, v) => c.write16(lin, v),
    write32: (lin, v) => c.write32(lin, v),
    probeWrite: (lin, len) => c.probeWrite(lin, len),
    fault: (vector, errorCode = -1) => {
      throw new CpuFault(vector, errorCode);
    },
    setFlagsZPC: (zf, pf, cf) => c.setArith((zf ? 0x40 : 0) | (pf ? 4 : 0) | (cf ? 1 : 0)),
    setArithFlags: (arith) => c.setArith(arith),
    getRflags: () => c.getRflags(),
  };
}
