/**
 * Oracle: XSAVE, XSAVEOPT and XRSTOR (and their REX.W forms) against the host CPU, for the x87
 * and SSE components: the requested-feature mask EDX:EAX is 1, 2 or 3 (the host's XCR0 has more
 * components; ours is 3 — emulated.ts sets it and CR4.OSXSAVE as Linux does for user mode).
 *
 * The image is compared byte for byte except the fields that legitimately differ: FOP, FIP/FCS
 * and FDP/FDS (not tracked exactly, as for FXSAVE), MXCSR_MASK (the host's has DAZ and more),
 * and XSTATE_BV after an XRSTOR that put a component in its initial configuration (the host
 * tracks XINUSE and reports such a component as not in use; we report every component in use,
 * which the SDM allows). XRSTOR cases load a random mix of header bits (XSTATE_BV ⊆ 3) and are
 * checked through the state they leave (registers, MXCSR, and a second XSAVE).
 *
 * Data buffer: RBX = 0x200 points at the first area (64-byte aligned in both worlds), the
 * second area is at RBX + 0x280.
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { BASE_REG } from './gen.js';
import { nativeSupported } from './native.js';
import { expectClean, fuzz, randomState, type OracleCase, type Rng } from './oracle.js';

const N = 120;
const BASE = 0x200;
const SECOND = 0x280;

/** Zero what legitimately differs in the legacy region of the image at [rbx + off]. */
function scrub(off: number): string {
  const a = (d: number): string => `rbx + ${off + d}`;
  return [`mov word [${a(6)}], 0`, `mov qword [${a(8)}], 0`, `mov qword [${a(16)}], 0`, `mov dword [${a(28)}], 0`].join('\n');
}

/** An x87 stack of one to four values, a random control word, the random XMM and MXCSR of the state. */
function x87Setup(rng: Rng): string {
  const loads = ['fld1', 'fldpi', 'fldl2t', 'fldlg2', 'fld st0', 'fadd st0, st1', 'fdiv st0, st1'];
  const body = ['fninit', ...Array<string>(8).fill('fldz'), 'fninit', 'fldcw [rbx + 0x4f0]'];
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) body.push(rng.pick(loads.slice(0, i === 0 ? 4 : loads.length)));
  return body.join('\n');
}

function baseCase(rng: Rng): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), ptrRegs: [BASE_REG], checkMxcsr: true };
  c.state.gpr[BASE_REG] = BigInt(BASE);
  c.state.mxcsr = 0x1f80 | (rng.int(4) << 13) | (rng.u32() & 0x3f);
  const cw = 0x3f | 0x40 | (rng.pick([2, 3]) << 8) | (rng.int(4) << 10);
  c.state.mem[BASE + 0x4f0] = cw & 0xff;
  c.state.mem[BASE + 0x4f1] = cw >> 8;
  // header bytes 0..23 of both areas (XSTATE_BV, XCOMP_BV, the 8 bytes XRSTOR checks) start as
  // 0; bytes 24..63 stay random (XRSTOR ignores them, XSAVE leaves them)
  c.state.mem.fill(0, BASE + 512, BASE + 536);
  c.state.mem.fill(0, BASE + SECOND + 512, BASE + SECOND + 536);
  return c;
}

const request = (mask: number): string => `mov eax, ${mask}\nxor edx, edx`;

/** XSAVE / XSAVEOPT / XSAVE64 with mask 1, 2 or 3 into the first area. */
function saveCase(rng: Rng): OracleCase {
  const c = baseCase(rng);
  const op = rng.pick(['xsave', 'xsaveopt', 'xsave64', 'xsaveopt64']);
  const mask = rng.pick([1, 2, 3]);
  c.asm = [x87Setup(rng), request(mask), `${op} [rbx]`, scrub(0)].join('\n');
  return c;
}

/** XSAVE everything, clobber, XRSTOR with a mask and XSTATE_BV ⊆ 3, then XSAVE everything again. */
function restoreCase(rng: Rng): OracleCase {
  const c = baseCase(rng);
  const w = rng.bool() ? '64' : '';
  const mask = rng.pick([1, 2, 3]);
  const bv = rng.int(4);
  const body = [x87Setup(rng), request(3), `xsave${w} [rbx]`];
  body.push(`mov dword [rbx + 512], ${bv}`);
  // a valid MXCSR other than the current one in the image, so that its reload shows
  body.push(`mov dword [rbx + 24], ${0x1f80 | (rng.int(4) << 13) | rng.int(64)}`);
  // clobber: x87 to a different stack, XMM3 and XMM12 zero, MXCSR default
  body.push('fninit', 'fld1', 'fld1', 'pxor xmm3, xmm3', 'pcmpeqb xmm12, xmm12', 'mov dword [rbx + 0x4f8], 0x1f80', 'ldmxcsr [rbx + 0x4f8]');
  body.push(request(mask), `xrstor${w} [rbx]`);
  body.push(request(3), `xsave${w} [rbx + ${SECOND}]`, scrub(0), scrub(SECOND));
  // the host reports a component XRSTOR initialized as not in use (XINUSE), we do not
  if ((mask & ~bv) !== 0) body.push(`mov byte [rbx + ${SECOND + 512}], 0`);
  c.asm = body.join('\n');
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: XSAVE family', () => {
  it('XSAVE / XSAVEOPT (and 64) image for EDX:EAX = 1, 2, 3', () => {
    expectClean(fuzz('xsave', N, saveCase));
  });
  it('XRSTOR (and 64): loads, initializes (XSTATE_BV bit clear), MXCSR from the image, only the requested components', () => {
    expectClean(fuzz('xrstor', N, restoreCase));
  });
});
