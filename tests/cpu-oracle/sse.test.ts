/**
 * Oracle: SSE/SSE2 integer and floating-point instructions (register and aligned memory
 * operands), with random MXCSR rounding modes; results, flags (COMIS/UCOMIS) and the MXCSR
 * exception flags are compared. Floating-point lanes are drawn from a set of special values
 * (signed zeros, infinities, quiet and signalling NaNs, denormals, extremes) and random numbers.
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { BASE_REG, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, GPR32, GPR64, pickReg, randomState, type OracleCase, type Rng, expectClean } from './oracle.js';
import { putLanes, randomMxcsr } from './sse-gen.js';

const N = 60;

interface SseSpec {
  /** nasm mnemonic. */
  op: string;
  /** Operand shape. */
  form: 'xx' | 'xxi' | 'xi' | 'rx' | 'xr' | 'xri' | 'rxi' | 'xm' | 'mx';
  /** Lane kind for random data. */
  lanes: 'ps' | 'pd' | 'int';
  /** Memory operand size for xx forms when memory is used (scalar ops read 32/64 bits). */
  mem?: 'dword' | 'qword' | 'oword' | 'none';
  /** GPR width for xr/rx forms. */
  gpr?: 32 | 64;
  /** Range of the imm8 (default 0..255). */
  immMax?: number;
}

function sseCase(rng: Rng, spec: SseSpec, ftzDaz = false): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), checkMxcsr: true };
  for (let r = 0; r < 16; r++) putLanes(c.state.xmm, 16 * r, rng, spec.lanes);
  c.state.mxcsr = randomMxcsr(rng, ftzDaz);
  // an aligned memory operand: RBX = 16-aligned buffer offset, displacement a multiple of 16
  const base = 0x400 + 16 * rng.int(0x40);
  const disp = 16 * (rng.int(16) - 8);
  c.state.gpr[BASE_REG] = BigInt(base);
  c.ptrRegs = [BASE_REG];
  putLanes(c.state.mem, base + disp, rng, spec.lanes);
  const mem = `[rbx ${disp < 0 ? '-' : '+'} ${Math.abs(disp)}]`;
  const a = `xmm${rng.int(16)}`;
  const useMem = spec.mem !== 'none' && rng.bool(0.3);
  const b = useMem ? `${spec.mem ?? 'oword'} ${mem}` : `xmm${rng.int(16)}`;
  const imm = rng.int((spec.immMax ?? 255) + 1);
  const gprNames = spec.gpr === 64 ? GPR64 : GPR32;
  const g = pickReg(rng, [BASE_REG]);
  const gr = gprNames[g]!;
  if (rng.bool(0.3)) c.state.gpr[g] = mixLow(c.state.gpr[g]!, rng.value(spec.gpr ?? 32), spec.gpr ?? 32);
  switch (spec.form) {
    case 'xx': c.asm = `${spec.op} ${a}, ${b}`; break;
    case 'xxi': c.asm = `${spec.op} ${a}, ${useMem ? mem : b}, ${imm}`; break; // nasm infers the size here
    case 'xi': c.asm = `${spec.op} ${a}, ${imm}`; break;
    case 'rx': c.asm = `${spec.op} ${gr}, ${useMem && spec.mem !== undefined ? b : `xmm${rng.int(16)}`}`; break;
    case 'xr': c.asm = `${spec.op} ${a}, ${useMem ? `${spec.gpr === 64 ? 'qword' : 'dword'} ${mem}` : gr}`; break;
    case 'xri': c.asm = `${spec.op} ${a}, ${useMem ? `word ${mem}` : gr}, ${imm}`; break;
    case 'rxi': c.asm = `${spec.op} ${gr}, xmm${rng.int(16)}, ${imm}`; break;
    case 'xm': c.asm = `${spec.op} ${a}, ${spec.mem ?? 'oword'} ${mem}`; break;
    case 'mx': c.asm = `${spec.op} ${spec.mem ?? 'oword'} ${mem}, ${a}`; break;
  }
  return c;
}

const INT_BINARY = [
  'paddb', 'paddw', 'paddd', 'paddq', 'psubb', 'psubw', 'psubd', 'psubq', 'paddsb', 'paddsw', 'paddusb', 'paddusw',
  'psubsb', 'psubsw', 'psubusb', 'psubusw', 'pcmpeqb', 'pcmpeqw', 'pcmpeqd', 'pcmpgtb', 'pcmpgtw', 'pcmpgtd',
  'pand', 'pandn', 'por', 'pxor', 'pmullw', 'pmulhw', 'pmulhuw', 'pmuludq', 'pmaddwd', 'pavgb', 'pavgw', 'pminub',
  'pmaxub', 'pminsw', 'pmaxsw', 'psadbw', 'punpcklbw', 'punpcklwd', 'punpckldq', 'punpcklqdq', 'punpckhbw',
  'punpckhwd', 'punpckhdq', 'punpckhqdq', 'packsswb', 'packssdw', 'packuswb', 'psllw', 'pslld', 'psllq', 'psrlw',
  'psrld', 'psrlq', 'psraw', 'psrad',
];

const INT_SPECS: SseSpec[] = [
  ...INT_BINARY.map((op): SseSpec => ({ op, form: 'xx', lanes: 'int' })),
  ...['pshufd', 'pshuflw', 'pshufhw'].map((op): SseSpec => ({ op, form: 'xxi', lanes: 'int' })),
  ...['psllw', 'pslld', 'psllq', 'psrlw', 'psrld', 'psrlq', 'psraw', 'psrad', 'pslldq', 'psrldq'].map(
    (op): SseSpec => ({ op, form: 'xi', lanes: 'int', immMax: 70 }),
  ),
  { op: 'pmovmskb', form: 'rx', lanes: 'int' },
  { op: 'movd', form: 'xr', lanes: 'int', gpr: 32 },
  { op: 'movq', form: 'xr', lanes: 'int', gpr: 64 },
  { op: 'movd', form: 'rx', lanes: 'int', gpr: 32 },
  { op: 'movq', form: 'rx', lanes: 'int', gpr: 64 },
  { op: 'movq', form: 'xx', lanes: 'int', mem: 'qword' },
  { op: 'movq', form: 'mx', lanes: 'int', mem: 'qword' },
  { op: 'pextrw', form: 'rxi', lanes: 'int', gpr: 32 },
  { op: 'pinsrw', form: 'xri', lanes: 'int', gpr: 32 },
  { op: 'movdqa', form: 'xx', lanes: 'int' },
  { op: 'movdqu', form: 'xx', lanes: 'int' },
  { op: 'movdqa', form: 'mx', lanes: 'int' },
  { op: 'movdqu', form: 'mx', lanes: 'int' },
  { op: 'movaps', form: 'mx', lanes: 'int' },
  { op: 'movups', form: 'xx', lanes: 'int' },
  { op: 'movapd', form: 'xx', lanes: 'int' },
  { op: 'movhlps', form: 'xx', lanes: 'int', mem: 'none' },
  { op: 'movlhps', form: 'xx', lanes: 'int', mem: 'none' },
  { op: 'movhps', form: 'xm', lanes: 'int', mem: 'qword' },
  { op: 'movlps', form: 'mx', lanes: 'int', mem: 'qword' },
  { op: 'movhpd', form: 'mx', lanes: 'int', mem: 'qword' },
  { op: 'movlpd', form: 'xm', lanes: 'int', mem: 'qword' },
  { op: 'movss', form: 'xx', lanes: 'int', mem: 'dword' },
  { op: 'movsd', form: 'xx', lanes: 'int', mem: 'qword' },
  { op: 'movss', form: 'mx', lanes: 'int', mem: 'dword' },
  { op: 'movsd', form: 'mx', lanes: 'int', mem: 'qword' },
  { op: 'shufps', form: 'xxi', lanes: 'int' },
  { op: 'shufpd', form: 'xxi', lanes: 'int' },
  ...['unpcklps', 'unpckhps', 'unpcklpd', 'unpckhpd', 'andps', 'andnps', 'orps', 'xorps', 'andpd', 'andnpd', 'orpd', 'xorpd'].map(
    (op): SseSpec => ({ op, form: 'xx', lanes: 'int' }),
  ),
  { op: 'movmskps', form: 'rx', lanes: 'int', mem: undefined },
  { op: 'movmskpd', form: 'rx', lanes: 'int', mem: undefined },
];

const FP_ARITH = ['add', 'sub', 'mul', 'div', 'min', 'max', 'sqrt'];
const FP_SPECS: SseSpec[] = [];
for (const base of FP_ARITH) {
  FP_SPECS.push({ op: `${base}ss`, form: 'xx', lanes: 'ps', mem: 'dword' });
  FP_SPECS.push({ op: `${base}sd`, form: 'xx', lanes: 'pd', mem: 'qword' });
  FP_SPECS.push({ op: `${base}ps`, form: 'xx', lanes: 'ps' });
  FP_SPECS.push({ op: `${base}pd`, form: 'xx', lanes: 'pd' });
}
FP_SPECS.push(
  { op: 'cmpss', form: 'xxi', lanes: 'ps', mem: 'dword', immMax: 7 },
  { op: 'cmpsd', form: 'xxi', lanes: 'pd', mem: 'qword', immMax: 7 },
  { op: 'cmpps', form: 'xxi', lanes: 'ps', immMax: 7 },
  { op: 'cmppd', form: 'xxi', lanes: 'pd', immMax: 7 },
);

const CMP_SPECS: SseSpec[] = [
  { op: 'comiss', form: 'xx', lanes: 'ps', mem: 'dword' },
  { op: 'ucomiss', form: 'xx', lanes: 'ps', mem: 'dword' },
  { op: 'comisd', form: 'xx', lanes: 'pd', mem: 'qword' },
  { op: 'ucomisd', form: 'xx', lanes: 'pd', mem: 'qword' },
];

const CVT_SPECS: SseSpec[] = [
  { op: 'cvtsi2ss', form: 'xr', lanes: 'ps', gpr: 32 },
  { op: 'cvtsi2ss', form: 'xr', lanes: 'ps', gpr: 64 },
  { op: 'cvtsi2sd', form: 'xr', lanes: 'pd', gpr: 32 },
  { op: 'cvtsi2sd', form: 'xr', lanes: 'pd', gpr: 64 },
  { op: 'cvtss2si', form: 'rx', lanes: 'ps', gpr: 32, mem: 'dword' },
  { op: 'cvtss2si', form: 'rx', lanes: 'ps', gpr: 64, mem: 'dword' },
  { op: 'cvttss2si', form: 'rx', lanes: 'ps', gpr: 32, mem: 'dword' },
  { op: 'cvttss2si', form: 'rx', lanes: 'ps', gpr: 64, mem: 'dword' },
  { op: 'cvtsd2si', form: 'rx', lanes: 'pd', gpr: 32, mem: 'qword' },
  { op: 'cvtsd2si', form: 'rx', lanes: 'pd', gpr: 64, mem: 'qword' },
  { op: 'cvttsd2si', form: 'rx', lanes: 'pd', gpr: 32, mem: 'qword' },
  { op: 'cvttsd2si', form: 'rx', lanes: 'pd', gpr: 64, mem: 'qword' },
  { op: 'cvtss2sd', form: 'xx', lanes: 'ps', mem: 'dword' },
  { op: 'cvtsd2ss', form: 'xx', lanes: 'pd', mem: 'qword' },
  { op: 'cvtps2pd', form: 'xx', lanes: 'ps', mem: 'qword' },
  { op: 'cvtpd2ps', form: 'xx', lanes: 'pd' },
  { op: 'cvtdq2ps', form: 'xx', lanes: 'int' },
  { op: 'cvtps2dq', form: 'xx', lanes: 'ps' },
  { op: 'cvttps2dq', form: 'xx', lanes: 'ps' },
  { op: 'cvtdq2pd', form: 'xx', lanes: 'int', mem: 'qword' },
  { op: 'cvtpd2dq', form: 'xx', lanes: 'pd' },
  { op: 'cvttpd2dq', form: 'xx', lanes: 'pd' },
];

function label(s: SseSpec): string {
  const g = s.gpr ? ` r${s.gpr}` : '';
  return `${s.op} (${s.form}${g})`;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: SSE/SSE2', () => {
  describe('integer and data movement', () => {
    for (const spec of INT_SPECS) {
      it(label(spec), () => {
        const r = fuzz(label(spec), N, (rng) => sseCase(rng, spec));
        expectClean(r);
      });
    }
  });
  describe('floating point arithmetic (NaN, infinity, denormal operands; all rounding modes)', () => {
    for (const spec of FP_SPECS) {
      it(label(spec), () => {
        const r = fuzz(label(spec), 2 * N, (rng) => sseCase(rng, spec));
        expectClean(r);
      });
    }
  });
  describe('COMIS/UCOMIS flags', () => {
    for (const spec of CMP_SPECS) {
      it(label(spec), () => {
        const r = fuzz(label(spec), 2 * N, (rng) => sseCase(rng, spec));
        expectClean(r);
      });
    }
  });
  describe('conversions', () => {
    for (const spec of CVT_SPECS) {
      it(label(spec), () => {
        const r = fuzz(label(spec), 2 * N, (rng) => sseCase(rng, spec));
        expectClean(r);
      });
    }
  });
  describe('FTZ / DAZ', () => {
    for (const op of ['addss', 'mulsd', 'divps', 'subpd', 'cvtsd2ss']) {
      const spec = FP_SPECS.find((s) => s.op === op) ?? CVT_SPECS.find((s) => s.op === op)!;
      it(`${op} with MXCSR.FTZ/DAZ`, () => {
        const r = fuzz(`${op}-ftz`, N, (rng) => sseCase(rng, spec, true));
        expectClean(r);
      });
    }
  });
});
