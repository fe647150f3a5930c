/**
 * A small WebAssembly binary writer: just what the block translator emits (one module with
 * imported memory and functions, a few functions of its own, i32/i64/f64 code). Instructions are
 * appended to a growable byte buffer; no validation beyond what WebAssembly.Module does.
 */

export const enum T { I32 = 0x7f, I64 = 0x7e, F64 = 0x7c, V128 = 0x7b }

/** SIMD opcodes used by the translator (after the 0xfd prefix; names as in the text format). */
export const enum V {
  v128_load = 0x00, v128_store = 0x0b, i8x16_shuffle = 0x0d, i8x16_swizzle = 0x0e, i8x16_splat = 0x0f, i64x2_splat = 0x12,
  i32x4_extract_lane = 0x1b, i32x4_replace_lane = 0x1c, i64x2_extract_lane = 0x1d, i64x2_replace_lane = 0x1e,
  i8x16_eq = 0x23, i8x16_gt_s = 0x27, i16x8_eq = 0x2d, i16x8_gt_s = 0x31, i32x4_eq = 0x37, i32x4_gt_s = 0x3b,
  v128_not = 0x4d, v128_and = 0x4e, v128_andnot = 0x4f, v128_or = 0x50, v128_xor = 0x51, v128_any_true = 0x53,
  i8x16_abs = 0x60, i8x16_bitmask = 0x64,
  i8x16_add = 0x6e, i8x16_add_sat_s = 0x6f, i8x16_add_sat_u = 0x70, i8x16_sub = 0x71, i8x16_sub_sat_s = 0x72, i8x16_sub_sat_u = 0x73,
  i8x16_min_s = 0x76, i8x16_min_u = 0x77, i8x16_max_s = 0x78, i8x16_max_u = 0x79, i8x16_avgr_u = 0x7b,
  i16x8_abs = 0x80, i16x8_narrow_i32x4_u = 0x86,
  i16x8_shl = 0x8b, i16x8_shr_s = 0x8c, i16x8_shr_u = 0x8d, i16x8_add = 0x8e, i16x8_add_sat_s = 0x8f, i16x8_add_sat_u = 0x90,
  i16x8_sub = 0x91, i16x8_sub_sat_s = 0x92, i16x8_sub_sat_u = 0x93, i16x8_mul = 0x95, i16x8_min_s = 0x96, i16x8_min_u = 0x97,
  i16x8_max_s = 0x98, i16x8_max_u = 0x99, i16x8_avgr_u = 0x9b,
  i32x4_abs = 0xa0,
  i32x4_shl = 0xab, i32x4_shr_s = 0xac, i32x4_shr_u = 0xad, i32x4_add = 0xae, i32x4_sub = 0xb1, i32x4_mul = 0xb5,
  i32x4_min_s = 0xb6, i32x4_min_u = 0xb7, i32x4_max_s = 0xb8, i32x4_max_u = 0xb9,
  i64x2_shl = 0xcb, i64x2_shr_u = 0xcd, i64x2_add = 0xce, i64x2_sub = 0xd1, i64x2_eq = 0xd6, i64x2_gt_s = 0xd9,
}

/** Opcodes used by the translator (names as in the WebAssembly text format). */
export const enum Op {
  unreachable = 0x00, block = 0x02, loop = 0x03, if = 0x04, else = 0x05, end = 0x0b, br = 0x0c, br_if = 0x0d,
  return = 0x0f, call = 0x10, call_indirect = 0x11, return_call_indirect = 0x13, drop = 0x1a, select = 0x1b,
  local_get = 0x20, local_set = 0x21, local_tee = 0x22, global_get = 0x23,
  i32_load = 0x28, i64_load = 0x29, f64_load = 0x2b, i32_load8_u = 0x2d, i32_load16_u = 0x2f,
  i64_load8_u = 0x31, i64_load16_u = 0x33, i64_load32_u = 0x35,
  i32_store = 0x36, i64_store = 0x37, f64_store = 0x39, i64_store8 = 0x3c, i64_store16 = 0x3d, i64_store32 = 0x3e,
  i32_const = 0x41, i64_const = 0x42, f64_const = 0x44,
  i32_eqz = 0x45, i32_eq = 0x46, i32_ne = 0x47, i32_lt_s = 0x48, i32_lt_u = 0x49, i32_gt_s = 0x4a, i32_gt_u = 0x4b,
  i32_le_s = 0x4c, i32_le_u = 0x4d, i32_ge_s = 0x4e, i32_ge_u = 0x4f,
  i64_eqz = 0x50, i64_eq = 0x51, i64_ne = 0x52, i64_lt_s = 0x53, i64_lt_u = 0x54, i64_gt_s = 0x55, i64_gt_u = 0x56,
  i64_le_s = 0x57, i64_le_u = 0x58, i64_ge_s = 0x59, i64_ge_u = 0x5a,
  f64_eq = 0x61, f64_add = 0xa0,
  i32_clz = 0x67, i32_ctz = 0x68, i32_popcnt = 0x69, i32_add = 0x6a, i32_sub = 0x6b, i32_mul = 0x6c, i32_and = 0x71, i32_or = 0x72, i32_xor = 0x73,
  i32_shl = 0x74, i32_shr_s = 0x75, i32_shr_u = 0x76, i32_rotl = 0x77, i32_rotr = 0x78,
  i64_clz = 0x79, i64_ctz = 0x7a, i64_popcnt = 0x7b, i64_add = 0x7c, i64_sub = 0x7d, i64_mul = 0x7e,
  i64_div_s = 0x7f, i64_div_u = 0x80, i64_rem_s = 0x81, i64_rem_u = 0x82,
  i64_and = 0x83, i64_or = 0x84, i64_xor = 0x85, i64_shl = 0x86, i64_shr_s = 0x87, i64_shr_u = 0x88, i64_rotl = 0x89, i64_rotr = 0x8a,
  i32_wrap_i64 = 0xa7, i32_trunc_f64_s = 0xaa, i64_extend_i32_s = 0xac, i64_extend_i32_u = 0xad,
  f64_convert_i64_s = 0xb9,
  i64_extend8_s = 0xc2, i64_extend16_s = 0xc3, i64_extend32_s = 0xc4,
}

/** v (0 ≤ v < 2^28) as a five-byte signed LEB128. */
function padded(b: Bytes, v: number): void {
  if (v < 0 || v >= 1 << 28) throw new RangeError(`patchable constant ${v} out of range`);
  for (let i = 0; i < 4; i++) b.byte(((v >>> (7 * i)) & 0x7f) | 0x80);
  b.byte((v >>> 28) & 0x7f);
}

const F64_SCRATCH = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64_SCRATCH.buffer);

/** Growable byte buffer with LEB128 writers. */
export class Bytes {
  buf: Uint8Array;
  len = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
  }

  /** Make room for n more bytes. */
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 4, this.len + n));
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }

  byte(b: number): void {
    if (this.len === this.buf.length) this.room(1);
    this.buf[this.len++] = b;
  }

  u32(v: number): void {
    v >>>= 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }

  s32(v: number): void {
    v |= 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  /** Signed LEB128 of the 64-bit value hi:lo (two's complement halves). */
  s64(lo: number, hi: number): void {
    lo >>>= 0;
    hi |= 0;
    for (;;) {
      const b = lo & 0x7f;
      // shift the 64-bit value right by 7 (arithmetic)
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>= 7;
      const done = (hi === 0 && lo === 0 && (b & 0x40) === 0) || (hi === -1 && lo === 0xffffffff && (b & 0x40) !== 0);
      if (done) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  /** Append another buffer's bytes. */
  append(o: Bytes): void {
    this.room(o.len);
    this.buf.set(o.buf.subarray(0, o.len), this.len);
    this.len += o.len;
  }

  bytes(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.byte(b[i]!);
  }

  /** A length-prefixed copy of `inner`. */
  vec(inner: Bytes): void {
    this.u32(inner.len);
    this.append(inner);
  }

  name(s: string): void {
    this.u32(s.length);
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** The code of one function: locals and an instruction stream. */
export class FuncBody {
  /** The instruction stream (a generator may swap in fresh buffers and join them later). */
  code = new Bytes(1024);
  private readonly locals: T[] = [];
  /**
   * Branch hints: for each hinted `if`, the buffer it was written to and its offset there
   * (`hint`); once the code is final, `hints` holds code offsets and values (0 unlikely, 1 likely).
   */
  pendingHints: { buf: Bytes; at: number; likely: number }[] = [];
  hints: [number, number][] = [];
  /**
   * Patchable constants (`i32Ref`): where each was written, then (once the code is final) its
   * offset in `code`, in order; `patchRef` rewrites one in place.
   */
  pendingRefs: { buf: Bytes; at: number; tag: number }[] = [];
  refs: number[] = [];
  /** What each ref stands for (the caller's tag), in the order of `refs`. */
  refTags: number[] = [];
  /** The function's name in the module's name section (what V8's profiler maps show), if any. */
  label: string | undefined;

  /** The next instruction (an `if` or `br_if`) is likely (1) or unlikely (0) to branch. */
  hint(likely: 0 | 1): this {
    this.pendingHints.push({ buf: this.code, at: this.code.len, likely });
    return this;
  }

  /** The code is final in `code`, joined from `parts` in order: turn pending hints into offsets. */
  resolveHints(parts: readonly (Bytes | number)[] = [this.code]): void {
    let at = 0;
    for (const p of parts) {
      if (typeof p === 'number') {
        at += p;
        continue;
      }
      for (const h of this.pendingHints) if (h.buf === p) this.hints.push([at + h.at, h.likely]);
      for (const r of this.pendingRefs) {
        if (r.buf !== p) continue;
        this.refs.push(at + r.at);
        this.refTags.push(r.tag);
      }
      at += p.len;
    }
    this.hints.sort((a, b) => a[0] - b[0]);
    this.pendingHints = [];
    this.pendingRefs = [];
  }

  /**
   * i32.const of a value that can be rewritten after the code is final (`patchRef`), in a fixed
   * five-byte encoding: 0 ≤ v < 2^28; `tag` says what it stands for (refTags).
   */
  i32Ref(v: number, tag: number): this {
    this.code.byte(Op.i32_const);
    this.pendingRefs.push({ buf: this.code, at: this.code.len, tag });
    padded(this.code, v);
    return this;
  }

  /** Rewrite the i-th `i32Ref` constant (the code must be final: resolveHints ran). */
  patchRef(i: number, v: number): void {
    const code = this.code;
    const end = code.len;
    code.len = this.refs[i]!;
    padded(code, v);
    code.len = end;
  }

  constructor(readonly params: readonly T[], readonly results: readonly T[]) {}

  /** A new local of type t (its index). */
  local(t: T): number {
    this.locals.push(t);
    return this.params.length + this.locals.length - 1;
  }

  op(o: Op): this {
    this.code.byte(o);
    return this;
  }

  /** An instruction with one index immediate (local.get/set/tee, call, br...). */
  private indexed(o: Op, index: number): this {
    this.code.byte(o);
    this.code.u32(index);
    return this;
  }

  get(l: number): this {
    return this.indexed(Op.local_get, l);
  }

  set(l: number): this {
    return this.indexed(Op.local_set, l);
  }

  globalGet(g: number): this {
    return this.indexed(Op.global_get, g);
  }

  tee(l: number): this {
    return this.indexed(Op.local_tee, l);
  }

  i32(v: number): this {
    this.code.byte(Op.i32_const);
    this.code.s32(v);
    return this;
  }

  /** i64.const of hi:lo. */
  i64(lo: number, hi: number): this {
    this.code.byte(Op.i64_const);
    this.code.s64(lo, hi);
    return this;
  }

  /** i64.const of a safe integer (|v| < 2^53). */
  i64n(v: number): this {
    const hi = Math.floor(v / 4294967296);
    return this.i64(v >>> 0, hi | 0);
  }

  f64(v: number): this {
    this.code.byte(Op.f64_const);
    F64_SCRATCH[0] = v;
    this.code.bytes(F64_BYTES);
    return this;
  }

  /** Load/store with a constant offset (alignment hint 0). */
  mem(o: Op, offset: number): this {
    this.code.byte(o);
    this.code.u32(0);
    this.code.u32(offset);
    return this;
  }

  /** i64.trunc_sat_f64_s (saturating: never traps). */
  truncSat(): this {
    this.code.byte(0xfc);
    this.code.u32(6);
    return this;
  }

  /** memory.copy (dst, src, n on the stack; memory 0 to memory 0, overlapping as memmove). */
  memoryCopy(): this {
    this.code.byte(0xfc);
    this.code.u32(10);
    this.code.byte(0);
    this.code.byte(0);
    return this;
  }

  /**
   * An atomic read-modify-write (the 0xFE prefix's `code`) of `size` bytes at the address on
   * the stack, offset 0, with the natural alignment atomics require (a misaligned address traps).
   */
  atomicRmw(code: number, size: number): this {
    this.code.byte(0xfe);
    this.code.u32(code);
    this.code.u32(Math.log2(size));
    this.code.u32(0);
    return this;
  }

  /** atomic.fence: a full barrier among threads (a shared memory's). */
  atomicFence(): this {
    this.code.byte(0xfe);
    this.code.u32(3);
    this.code.byte(0);
    return this;
  }

  /** memory.fill (dst, byte value, n on the stack; memory 0). */
  memoryFill(): this {
    this.code.byte(0xfc);
    this.code.u32(11);
    this.code.byte(0);
    return this;
  }

  /** return_call_indirect through table 0 with type `type`. */
  tailCallIndirect(type: number): this {
    this.code.byte(Op.return_call_indirect);
    this.code.u32(type);
    this.code.u32(0);
    return this;
  }

  /** call_indirect through table 0 with type `type` (the index is on the stack). */
  callIndirect(type: number): this {
    this.code.byte(Op.call_indirect);
    this.code.u32(type);
    this.code.u32(0);
    return this;
  }

  call(fn: number): this {
    return this.indexed(Op.call, fn);
  }

  /** A SIMD instruction without immediates (0xfd prefix; `op` from the SIMD opcode table, see V). */
  simd(op: V): this {
    this.code.byte(0xfd);
    this.code.u32(op);
    return this;
  }

  /** v128.load / v128.store and the other SIMD memory instructions, at a constant offset. */
  simdMem(op: V, offset: number): this {
    this.code.byte(0xfd);
    this.code.u32(op);
    this.code.u32(0);
    this.code.u32(offset);
    return this;
  }

  /** i8x16.shuffle: lanes 0..15 pick from the first operand, 16..31 from the second. */
  shuffle(lanes: readonly number[]): this {
    this.code.byte(0xfd);
    this.code.u32(V.i8x16_shuffle);
    for (let i = 0; i < 16; i++) this.code.byte(lanes[i]!);
    return this;
  }

  /** An extract_lane / replace_lane instruction. */
  lane(op: V, lane: number): this {
    this.code.byte(0xfd);
    this.code.u32(op);
    this.code.byte(lane);
    return this;
  }

  /** return_call: a tail call of function `fn`. */
  tailCall(fn: number): this {
    this.code.byte(0x12);
    this.code.u32(fn);
    return this;
  }

  /** block / loop / if with an empty or single-result type. */
  begin(o: Op.block | Op.loop | Op.if, result?: T): this {
    this.code.byte(o);
    this.code.byte(result ?? 0x40);
    return this;
  }

  br(o: Op.br | Op.br_if, depth: number): this {
    return this.indexed(o, depth);
  }

  /** Encoded body: local declarations (run-length) then code then `end`. */
  encode(out: Bytes): void {
    const head = this.head();
    // size, locals, code, end: the code is copied once, straight into `out`
    out.u32(head.len + this.code.len + 1);
    out.append(head);
    out.append(this.code);
    out.byte(Op.end);
  }

  /** The local declarations (run-length encoded). */
  head(): Bytes {
    const head = new Bytes();
    const groups: [number, T][] = [];
    for (const t of this.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    head.u32(groups.length);
    for (const [n, t] of groups) {
      head.u32(n);
      head.byte(t);
    }
    return head;
  }

  /** Bytes encode() writes at most. */
  get encodedSize(): number {
    return 5 + 6 * this.locals.length + 5 + this.code.len + 1;
  }
}

export interface FuncImport {
  module: string;
  name: string;
  params: readonly T[];
  results: readonly T[];
}

export interface Sig {
  params: readonly T[];
  results: readonly T[];
}

/**
 * Assemble a module: the memory imported as ("e", "m"), then with `table` a funcref table as
 * ("e", table), then the function imports (indices 0..imports-1), then `funcs` (indices after
 * the imports); `exports` names function indices. Types 0.. are `leadingTypes` in order (they
 * must differ from each other), for call_indirect.
 * `sharedMemory`: the imported memory is a shared one (guest RAM several threads run on).
 * Costs in V8 worth knowing: a module that imports a table pays for every entry when
 * instantiated and on every later change of the table; a module that imports functions gets
 * a call wrapper compiled (by TurboFan) per imported signature.
 */
export function assembleModule(imports: readonly FuncImport[], funcs: readonly FuncBody[], exports: Record<string, number>,
  leadingTypes: readonly Sig[], table?: string | { own: number }, refGlobals?: readonly number[], sharedMemory = false, baseGlobal = false): Uint8Array {
  // baseGlobal: import an immutable i32 "e"."b" as global 0 (translated blocks of a relative
  // layout read their state area's address from it)
  // table: the name of an imported funcref table (table 0), or the size of one the module
  // defines and exports as "t" (nothing outside then holds on to the instance through it)
  const importTable = typeof table === 'string' ? table : undefined;
  const ownTable = typeof table === 'object' ? table.own : undefined;
  // sized for every body up front: growing a buffer of this size means copying it
  const bodies = funcs.reduce((n, f) => n + f.encodedSize, 0);
  const out = new Bytes(4096 + bodies);
  out.bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  // types: one per distinct signature
  const sigs: string[] = [];
  const sigOf = (p: readonly T[], r: readonly T[]): number => {
    const key = `${p.join(',')}:${r.join(',')}`;
    let i = sigs.indexOf(key);
    if (i < 0) {
      sigs.push(key);
      i = sigs.length - 1;
    }
    return i;
  };
  for (const t of leadingTypes) sigOf(t.params, t.results);
  if (sigs.length !== leadingTypes.length) throw new Error('assembleModule: leading types must differ');
  const importSigs = imports.map((f) => sigOf(f.params, f.results));
  const funcSigs = funcs.map((f) => sigOf(f.params, f.results));
  const section = (id: number, body: Bytes): void => {
    out.byte(id);
    out.vec(body);
  };
  const types = new Bytes();
  types.u32(sigs.length);
  for (const key of sigs) {
    const [p, r] = key.split(':').map((x) => (x === '' ? [] : x.split(',').map(Number)));
    types.byte(0x60);
    types.u32(p!.length);
    types.bytes(p!);
    types.u32(r!.length);
    types.bytes(r!);
  }
  section(1, types);
  const imp = new Bytes();
  imp.u32(imports.length + (importTable !== undefined ? 2 : 1) + (baseGlobal ? 1 : 0));
  imp.name('e');
  imp.name('m');
  imp.byte(0x02); // memory
  if (sharedMemory) {
    imp.byte(0x03); // shared, min 0, max 4 GiB (a shared memory must declare one; the host's decides)
    imp.u32(0);
    imp.u32(65536);
  } else {
    imp.byte(0x00); // min 0, no max (the host's Memory decides)
    imp.u32(0);
  }
  if (importTable !== undefined) {
    imp.name('e');
    imp.name(importTable);
    imp.byte(0x01); // table of funcref, min 0
    imp.byte(0x70);
    imp.byte(0x00);
    imp.u32(0);
  }
  if (baseGlobal) {
    imp.name('e');
    imp.name('b');
    imp.byte(0x03); // global: i32, immutable
    imp.byte(T.I32);
    imp.byte(0x00);
  }
  imports.forEach((f, i) => {
    imp.name(f.module);
    imp.name(f.name);
    imp.byte(0x00);
    imp.u32(importSigs[i]!);
  });
  section(2, imp);
  const fn = new Bytes();
  fn.u32(funcs.length);
  for (const s of funcSigs) fn.u32(s);
  section(3, fn);
  if (ownTable !== undefined) {
    const tb = new Bytes();
    tb.u32(1);
    tb.byte(0x70); // funcref, min = max = ownTable
    tb.byte(0x01);
    tb.u32(ownTable);
    tb.u32(ownTable);
    section(4, tb);
  }
  const refs = refGlobals ?? [];
  if (refs.length > 0) {
    // global i: an immutable funcref to function refs[i], exported as "g<i>" below
    const gl = new Bytes();
    gl.u32(refs.length);
    for (const fi of refs) {
      gl.byte(0x70);
      gl.byte(0x00);
      gl.byte(0xd2); // ref.func
      gl.u32(fi);
      gl.byte(Op.end);
    }
    section(6, gl);
  }
  const ex = new Bytes();
  const names = Object.keys(exports);
  ex.u32(names.length + refs.length + (ownTable !== undefined ? 1 : 0));
  if (ownTable !== undefined) {
    ex.name('t');
    ex.byte(0x01);
    ex.u32(0);
  }
  for (const n of names) {
    ex.name(n);
    ex.byte(0x00);
    ex.u32(exports[n]!);
  }
  refs.forEach((_fi, i) => {
    ex.name(`g${i}`);
    ex.byte(0x03);
    ex.u32(i + (baseGlobal ? 1 : 0));
  });
  section(7, ex);
  if (refs.length > 0) {
    // a declarative element segment makes ref.func of them valid
    const el = new Bytes();
    el.u32(1);
    el.u32(3);
    el.byte(0x00);
    el.u32(refs.length);
    for (const fi of refs) el.u32(fi);
    section(9, el);
  }
  if (funcs.some((f) => f.hints.length > 0)) {
    // branch hints (metadata.code.branch_hint): offsets count from the start of a body's locals
    const bh = new Bytes();
    bh.name('metadata.code.branch_hint');
    const hinted = funcs.map((f, i) => [f, i] as const).filter(([f]) => f.hints.length > 0);
    bh.u32(hinted.length);
    for (const [f, i] of hinted) {
      bh.u32(imports.length + i);
      bh.u32(f.hints.length);
      const h = f.head().len;
      for (const [at, v] of f.hints) {
        bh.u32(h + at);
        bh.u32(1);
        bh.byte(v);
      }
    }
    section(0, bh);
  }
  const code = new Bytes(5 + bodies);
  code.u32(funcs.length);
  for (const f of funcs) f.encode(code);
  section(10, code);
  if (funcs.some((f) => f.label !== undefined)) {
    // the name section (function names, subsection 1): what V8 calls the functions in profiles
    const labelled = funcs.map((f, i) => [f.label, imports.length + i] as const).filter(([l]) => l !== undefined);
    const fnames = new Bytes();
    fnames.u32(labelled.length);
    for (const [l, i] of labelled) {
      fnames.u32(i);
      fnames.name(l!);
    }
    const ns = new Bytes();
    ns.name('name');
    ns.byte(1);
    ns.vec(fnames);
    section(0, ns);
  }
  return out.result();
}
