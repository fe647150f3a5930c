/**
 * Oracle: SSE3, SSSE3 (MMX and XMM forms), SSE4.1 and SSE4.2 against the host CPU — register
 * and memory forms (aligned where the instruction demands it, misaligned where it does not),
 * random immediates, MXCSR rounding modes for the floating-point ones, flags for PTEST and
 * PCMPxSTRx, GPR results for the extracts, PCMPxSTRI and CRC32, and FISTTP's three sizes.
 *
 * The emulated CPU has these features off by default (src/cpu/features.ts); this file turns
 * them on for its runs and restores them afterwards.
 *
 * MMX forms: the MMX registers are not part of the compared state, so each snippet loads them
 * from XMM registers (MOVDQ2Q), runs the instruction and copies the result back (MOVQ2DQ), then
 * EMMS.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { features } from '../../src/cpu/features.js';
import { nasmMissing } from './assemble.js';
import { BASE_REG, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, GPR32, GPR64, GPR8, GPR16, pickReg, randomState, type OracleCase, type Rng, expectClean } from './oracle.js';
import { f64Lane, putLanes, randomMxcsr } from './sse-gen.js';

const N = 60;
/** psNum: single-precision lanes without NaNs (DPPS: which NaN a dot product returns differs between Intel and AMD CPUs). */
type Lanes = 'ps' | 'psNum' | 'pd' | 'int' | 'str';

/** Integer lanes for the string compares: a small alphabet, zeros (implicit lengths) and repeats. */
function putStr(buf: Uint8Array, off: number, rng: Rng): void {
  const words = rng.bool(0.4);
  const alpha = 1 + rng.int(5);
  const zeroAt = rng.bool(0.5) ? rng.int(20) : 99;
  for (let k = 0; k < 16; k += words ? 2 : 1) {
    let v = rng.bool(0.85) ? 0x60 + rng.int(alpha) : rng.int(256);
    if (k >= zeroAt) v = rng.bool(0.5) ? 0 : v;
    else if (k === zeroAt) v = 0;
    buf[off + k] = v;
    if (words) buf[off + k + 1] = rng.bool(0.8) ? 0 : rng.int(256);
    if (words && v === 0 && rng.bool(0.5)) buf[off + k + 1] = 0;
  }
}

function fill(buf: Uint8Array, off: number, rng: Rng, kind: Lanes): void {
  if (kind === 'str') putStr(buf, off, rng);
  else if (kind === 'psNum') {
    putLanes(buf, off, rng, 'ps');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let i = 0; i < 4; i++) if (Number.isNaN(dv.getFloat32(off + 4 * i, true))) dv.setFloat32(off + 4 * i, 1.5, true);
  } else putLanes(buf, off, rng, kind);
}

interface Spec {
  /** nasm mnemonic. */
  op: string;
  /**
   * xx: op xmm, xmm/m; xxi: with an imm8; mm / mmi: the MMX form; rxi: op r/m, xmm, imm8 (extracts);
   * xri: op xmm, r/m, imm8 (inserts); xm: memory source only.
   */
  form: 'xx' | 'xxi' | 'mm' | 'mmi' | 'rxi' | 'xri' | 'xm';
  lanes: Lanes;
  /** Memory operand size keyword ('none': register forms only). */
  mem?: 'byte' | 'word' | 'dword' | 'qword' | 'oword' | 'none';
  /** The memory operand may be misaligned (the instruction does not require alignment). */
  unaligned?: boolean;
  gpr?: 32 | 64;
  immMax?: number;
  /** Extra setup of the case (lengths in EAX/EDX...). */
  setup?: (rng: Rng, c: OracleCase) => void;
}

function memAt(rng: Rng, c: OracleCase, spec: Spec): { text: string; off: number } {
  const base = 0x400 + 16 * rng.int(0x40);
  let disp = 16 * (rng.int(16) - 8);
  if (spec.unaligned && rng.bool(0.6)) disp += 1 + rng.int(15);
  c.state.gpr[BASE_REG] = BigInt(base);
  c.ptrRegs = [BASE_REG];
  return { text: `[rbx ${disp < 0 ? '-' : '+'} ${Math.abs(disp)}]`, off: base + disp };
}

function caseFor(rng: Rng, spec: Spec): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), checkMxcsr: true };
  for (let r = 0; r < 16; r++) fill(c.state.xmm, 16 * r, rng, spec.lanes);
  c.state.mxcsr = randomMxcsr(rng, rng.bool(0.2));
  const m = memAt(rng, c, spec);
  fill(c.state.mem, m.off, rng, spec.lanes);
  const useMem = spec.form === 'xm' || (spec.mem !== 'none' && rng.bool(0.35));
  const size = spec.mem ?? 'oword';
  const memOp = `${size === 'none' ? 'oword' : size} ${m.text}`;
  const imm = rng.int((spec.immMax ?? 255) + 1);
  const a = rng.int(16);
  const b = rng.int(16);
  const g = pickReg(rng, [BASE_REG]);
  const width = spec.gpr ?? 32;
  if (rng.bool(0.5)) c.state.gpr[g] = mixLow(c.state.gpr[g]!, rng.value(width), width);
  const gr = (width === 64 ? GPR64 : GPR32)[g]!;
  const src = useMem ? memOp : `xmm${b}`;
  switch (spec.form) {
    case 'xx': c.asm = `${spec.op} xmm${a}, ${src}`; break;
    case 'xm': c.asm = `${spec.op} xmm${a}, ${memOp}`; break;
    case 'xxi': c.asm = `${spec.op} xmm${a}, ${useMem ? m.text : src}, ${imm}`; break;
    case 'mm': case 'mmi': {
      const x = rng.int(8);
      const y = rng.int(8);
      const s = useMem ? `qword ${m.text}` : `mm${y}`;
      const tail = spec.form === 'mmi' ? `, ${imm}` : '';
      c.asm = `movdq2q mm${x}, xmm${a}\nmovdq2q mm${y}, xmm${b}\n${spec.op} mm${x}, ${s}${tail}\nmovq2dq xmm${a}, mm${x}\nemms`;
      break;
    }
    case 'rxi': c.asm = `${spec.op} ${useMem ? memOp : gr}, xmm${a}, ${imm}`; break;
    case 'xri': c.asm = `${spec.op} xmm${a}, ${useMem ? memOp : gr}, ${imm}`; break;
  }
  spec.setup?.(rng, c);
  return c;
}

// ---- SSE3 ---------------------------------------------------------------------------------

const SSE3_SPECS: Spec[] = [
  { op: 'addsubps', form: 'xx', lanes: 'ps' },
  { op: 'addsubpd', form: 'xx', lanes: 'pd' },
  { op: 'haddps', form: 'xx', lanes: 'ps' },
  { op: 'haddpd', form: 'xx', lanes: 'pd' },
  { op: 'hsubps', form: 'xx', lanes: 'ps' },
  { op: 'hsubpd', form: 'xx', lanes: 'pd' },
  { op: 'movsldup', form: 'xx', lanes: 'int' },
  { op: 'movshdup', form: 'xx', lanes: 'int' },
  { op: 'movddup', form: 'xx', lanes: 'int', mem: 'qword', unaligned: true },
  { op: 'lddqu', form: 'xm', lanes: 'int', unaligned: true },
];

// ---- SSSE3 --------------------------------------------------------------------------------

const SSSE3_OPS = ['pshufb', 'phaddw', 'phaddd', 'phaddsw', 'phsubw', 'phsubd', 'phsubsw', 'pmaddubsw', 'pmulhrsw',
  'psignb', 'psignw', 'psignd', 'pabsb', 'pabsw', 'pabsd'];
const SSSE3_SPECS: Spec[] = [
  ...SSSE3_OPS.map((op): Spec => ({ op, form: 'xx', lanes: 'int' })),
  ...SSSE3_OPS.map((op): Spec => ({ op, form: 'mm', lanes: 'int', mem: 'qword', unaligned: true })),
  { op: 'palignr', form: 'xxi', lanes: 'int', immMax: 40 },
  { op: 'palignr', form: 'mmi', lanes: 'int', mem: 'qword', unaligned: true, immMax: 20 },
];

// ---- SSE4.1 -------------------------------------------------------------------------------

const PMOVX: [string, 'qword' | 'dword' | 'word'][] = [
  ['bw', 'qword'], ['bd', 'dword'], ['bq', 'word'], ['wd', 'qword'], ['wq', 'dword'], ['dq', 'qword'],
];
const SSE41_SPECS: Spec[] = [
  ...['pblendvb', 'blendvps', 'blendvpd', 'pmuldq', 'pcmpeqq', 'packusdw', 'pminsb', 'pminsd', 'pminuw', 'pminud',
    'pmaxsb', 'pmaxsd', 'pmaxuw', 'pmaxud', 'pmulld', 'phminposuw'].map((op): Spec => ({ op, form: 'xx', lanes: 'int' })),
  ...PMOVX.flatMap(([s, mem]): Spec[] => [
    { op: `pmovsx${s}`, form: 'xx', lanes: 'int', mem, unaligned: true },
    { op: `pmovzx${s}`, form: 'xx', lanes: 'int', mem, unaligned: true },
  ]),
  { op: 'movntdqa', form: 'xm', lanes: 'int' },
  { op: 'blendps', form: 'xxi', lanes: 'int', immMax: 15 },
  { op: 'blendpd', form: 'xxi', lanes: 'int', immMax: 3 },
  { op: 'pblendw', form: 'xxi', lanes: 'int' },
  { op: 'mpsadbw', form: 'xxi', lanes: 'int', immMax: 7 },
  { op: 'roundps', form: 'xxi', lanes: 'ps', immMax: 15 },
  { op: 'roundpd', form: 'xxi', lanes: 'pd', immMax: 15 },
  { op: 'roundss', form: 'xxi', lanes: 'ps', mem: 'dword', unaligned: true, immMax: 15 },
  { op: 'roundsd', form: 'xxi', lanes: 'pd', mem: 'qword', unaligned: true, immMax: 15 },
  { op: 'dpps', form: 'xxi', lanes: 'psNum' },
  { op: 'dppd', form: 'xxi', lanes: 'pd' },
  { op: 'insertps', form: 'xxi', lanes: 'int', mem: 'dword', unaligned: true },
  { op: 'extractps', form: 'rxi', lanes: 'int', mem: 'dword', unaligned: true, immMax: 7 },
  { op: 'pextrb', form: 'rxi', lanes: 'int', mem: 'byte', unaligned: true, immMax: 31 },
  { op: 'pextrw', form: 'rxi', lanes: 'int', mem: 'word', unaligned: true, immMax: 15 },
  { op: 'pextrd', form: 'rxi', lanes: 'int', mem: 'dword', unaligned: true, immMax: 7 },
  { op: 'pextrq', form: 'rxi', lanes: 'int', mem: 'qword', unaligned: true, gpr: 64, immMax: 3 },
  { op: 'pinsrb', form: 'xri', lanes: 'int', mem: 'byte', unaligned: true, immMax: 31 },
  { op: 'pinsrd', form: 'xri', lanes: 'int', mem: 'dword', unaligned: true, immMax: 7 },
  { op: 'pinsrq', form: 'xri', lanes: 'int', mem: 'qword', unaligned: true, gpr: 64, immMax: 3 },
];

/** PEXTRW's 0F 3A 15 register form (nasm assembles the register form as 0F C5). */
function pextrwReg(rng: Rng): OracleCase {
  const c = caseFor(rng, { op: 'pextrw', form: 'xx', lanes: 'int', mem: 'none' });
  const x = rng.int(8);
  const g = rng.pick([0, 1, 2, 5, 6, 7]);
  c.asm = `db 0x66, 0x0f, 0x3a, 0x15, ${0xc0 | (x << 3) | g}, ${rng.int(16)}`;
  return c;
}

/**
 * PTEST with operands that often give ZF or CF: the source is a subset of the destination's bits
 * (CF), disjoint from them (ZF), zero (both), or random.
 */
function ptestCase(rng: Rng): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  const m = memAt(rng, c, { op: '', form: 'xx', lanes: 'int' });
  const a = rng.int(16);
  const b = rng.int(16);
  const useMem = rng.bool(0.35);
  const x = c.state.xmm;
  const dst = x.slice(16 * a, 16 * a + 16);
  const kind = rng.int(4);
  const src = new Uint8Array(16);
  for (let k = 0; k < 16; k++) {
    const r = rng.bool(0.3) ? 0 : rng.int(256);
    src[k] = kind === 0 ? dst[k]! & r : kind === 1 ? ~dst[k]! & r : kind === 2 ? 0 : r;
  }
  if (useMem) c.state.mem.set(src, m.off);
  else if (b !== a) x.set(src, 16 * b);
  c.asm = `ptest xmm${a}, ${useMem ? `oword ${m.text}` : `xmm${b}`}`;
  return c;
}

// ---- SSE4.2 -------------------------------------------------------------------------------

/** Explicit lengths in RAX/RDX: mostly small (negative too), sometimes large or random. */
function lengths(rng: Rng, c: OracleCase): void {
  for (const r of [0, 2]) {
    const k = rng.int(10);
    if (k < 7) c.state.gpr[r] = mixLow(c.state.gpr[r]!, BigInt.asUintN(32, BigInt(rng.int(41) - 20)), 32);
    else if (k < 9) c.state.gpr[r] = rng.pick([0x80000000n, 0x7fffffffn, 0xffffffff80000000n, 0xfffffffffffffff0n, 0x100000005n, 5n]);
    else c.state.gpr[r] = rng.u64();
  }
}

const SSE42_SPECS: Spec[] = [
  { op: 'pcmpgtq', form: 'xx', lanes: 'int' },
  ...['pcmpestri', 'pcmpestrm'].map((op): Spec => ({ op, form: 'xxi', lanes: 'str', unaligned: true, immMax: 127, setup: lengths })),
  ...['pcmpistri', 'pcmpistrm'].map((op): Spec => ({ op, form: 'xxi', lanes: 'str', unaligned: true, immMax: 127 })),
];

/** PCMPESTRx with REX.W (64-bit lengths in RAX/RDX): nasm has no spelling for it. */
function pcmpestrWide(rng: Rng): OracleCase {
  const c = caseFor(rng, { op: 'pcmpestri', form: 'xx', lanes: 'str', mem: 'none' });
  lengths(rng, c);
  const op = rng.bool() ? 0x61 : 0x60;
  c.asm = `db 0x66, 0x48, 0x0f, 0x3a, ${op}, ${0xc0 | (rng.int(8) << 3) | rng.int(8)}, ${rng.int(128)}`;
  return c;
}

/** CRC32 r32/r64, r/m8/16/32/64. */
function crcCase(rng: Rng): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  const form = rng.int(6);
  const d = pickReg(rng, [BASE_REG]);
  const s = pickReg(rng, [BASE_REG]);
  const m = memAt(rng, c, { op: '', form: 'xx', lanes: 'int', unaligned: true });
  // the last form: a legacy high-byte register (not BH: RBX is the buffer pointer)
  const [dst, src, size] = [
    [GPR32[d]!, GPR8[s]!, 'byte'], [GPR32[d]!, GPR16[s]!, 'word'], [GPR32[d]!, GPR32[s]!, 'dword'],
    [GPR64[d]!, GPR64[s]!, 'qword'], [GPR64[d]!, GPR8[s]!, 'byte'], [GPR32[d]!, rng.pick(['ah', 'ch', 'dh']), 'byte'],
  ][form]! as [string, string, string];
  const useMem = form !== 5 && rng.bool(0.35);
  c.asm = `crc32 ${dst}, ${useMem ? `${size} ${m.text}` : src}`;
  if (form === 5 && d >= 8) c.asm = `crc32 eax, ${src}`;
  return c;
}

/** FISTTP m16/m32/m64 of a loaded double (with random rounding control: FISTTP ignores it). */
function fisttpCase(rng: Rng): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), ptrRegs: [BASE_REG] };
  const base = 0x400;
  c.state.gpr[BASE_REG] = BigInt(base);
  const cw = 0x37f | (rng.int(4) << 10);
  c.state.mem[base] = cw & 0xff;
  c.state.mem[base + 1] = cw >> 8;
  let v = f64Lane(rng);
  if (rng.bool(0.5)) {
    // values in the integer ranges, with fractions
    const mag = rng.pick([8, 16, 32, 64]);
    const x = (rng.u32() / 2 ** 32) * 2 ** mag * (rng.bool() ? -1 : 1) * (rng.bool(0.2) ? 1.0001 : 1);
    v = new BigUint64Array(new Float64Array([x]).buffer)[0]!;
  }
  for (let k = 0; k < 8; k++) c.state.mem[base + 8 + k] = Number((v >> BigInt(8 * k)) & 0xffn);
  const size = rng.pick(['word', 'dword', 'qword']);
  c.asm = `fninit\nfldcw [rbx]\nfld qword [rbx+8]\nfisttp ${size} [rbx+64]\nfnstsw ax`;
  return c;
}

function label(s: Spec): string {
  return `${s.op} (${s.form}${s.gpr ? ` r${s.gpr}` : ''}${s.mem && s.mem !== 'oword' ? ` ${s.mem}` : ''})`;
}

const saved = { ...features };
beforeAll(() => {
  features.sse3 = true;
  features.ssse3 = true;
  features.sse41 = true;
  features.sse42 = true;
});
afterAll(() => {
  Object.assign(features, saved);
});

function specSuite(title: string, specs: Spec[], count = N): void {
  describe(title, () => {
    for (const spec of specs) {
      it(label(spec), () => expectClean(fuzz(label(spec), spec.lanes === 'ps' || spec.lanes === 'psNum' || spec.lanes === 'pd' ? 2 * count : count, (rng) => caseFor(rng, spec))));
    }
  });
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: SSE3, SSSE3, SSE4.1, SSE4.2', () => {
  specSuite('SSE3', SSE3_SPECS);
  describe('SSE3 x87', () => {
    it('fisttp m16/m32/m64', () => expectClean(fuzz('fisttp', 2 * N, fisttpCase)));
  });
  specSuite('SSSE3', SSSE3_SPECS);
  specSuite('SSE4.1', SSE41_SPECS);
  describe('SSE4.1 flags, and encodings nasm does not write', () => {
    it('pextrw r32, xmm, imm8 (0F 3A 15 register form)', () => expectClean(fuzz('pextrw-3a', N, pextrwReg)));
    it('ptest (operands that set ZF, CF, both or neither)', () => expectClean(fuzz('ptest', 2 * N, ptestCase)));
  });
  specSuite('SSE4.2', SSE42_SPECS, 3 * N);
  describe('SSE4.2 encodings nasm does not write, and CRC32', () => {
    it('pcmpestri/pcmpestrm with REX.W (64-bit lengths)', () => expectClean(fuzz('pcmpestr-w', 2 * N, pcmpestrWide)));
    it('crc32 (all operand sizes, register and memory)', () => expectClean(fuzz('crc32', 3 * N, crcCase)));
  });
});
