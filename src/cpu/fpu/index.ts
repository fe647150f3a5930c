/**
 * The floating-point/SIMD unit of the software CPU: x87 (x87.ts, x87-stack.ts, x87-env.ts,
 * x87-d9.ts, extfloat.ts), MMX/SSE/SSE2 (sse.ts, sse-fp.ts, sse-int.ts, mmx.ts, softfloat.ts),
 * SSE3 (sse3.ts), the 0F 38 / 0F 3A maps — SSSE3, SSE4.1, SSE4.2 (sse-maps.ts, ssse3.ts, sse41.ts,
 * sse41-fp.ts, pcmpstr.ts) — and FXSAVE/FXRSTOR/LDMXCSR/STMXCSR (fxsave.ts), behind the `SimdUnit` interface the core calls
 * (src/cpu/simd-api.ts).
 */
import type { CpuState } from '../state.js';
import type { SimdUnit } from '../simd-api.js';
import { side } from './common.js';
import { handles0F, sse } from './sse.js';
import { fninit, fwait, x87 } from './x87.js';

export { fwait };

/** Power-on/RESET state of the unit: FNINIT, MXCSR = 0x1F80, registers cleared. */
function reset(cpu: CpuState): void {
  fninit(cpu);
  cpu.st.fill(0);
  side(cpu).rawValid.fill(0);
  cpu.xmm.fill(0);
  cpu.mxcsr = 0x1f80;
}

/**
 * The unit. `fwait` is the 9B (FWAIT) hook: #NM when CR0.MP and CR0.TS, #MF when an unmasked x87
 * exception is pending and CR0.NE is set (proposed as an optional SimdUnit member).
 */
export const simdUnit: SimdUnit & { fwait: typeof fwait } = { x87, sse, handles0F, reset, fwait };
