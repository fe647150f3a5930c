/**
 * What a transition between translated blocks costs on this host, against the size of the
 * code's working set: N small block functions (register reload, a few ALU operations, the flag
 * record and register write-back, the exit's link and key check — the shape of translate.ts's
 * blocks, ~200–300 bytes of machine code each) chained in a fixed random ring, M to a module.
 * Two ways to the successor: through a runtime module's `chain` (what blocks do) and straight
 * through a table of the block's own module. COLD=K gives each block K slow paths the ring never
 * takes (a call with the registers written back and reloaded, as a TLB miss does), inline
 * between its pieces as translated blocks have them; HINT=1 marks them unlikely with branch
 * hints, as translated blocks do. An analysis tool for docs/architecture.md ("The translator,
 * and where its time goes"), not a side-by-side benchmark: there is no peer.
 *
 *   [COLD=8] [HINT=1] node --import tsx bench/chain-transitions.ts [N=512] [M=256] [nosync]
 */
import { setFlagsFromString } from 'node:v8';
import { assembleModule, FuncBody, T, Op } from '../src/cpu/wasm/encoder.js';

if (process.env.HINT) setFlagsFromString('--experimental-wasm-branch-hinting');
const N = Number(process.argv[2] ?? 512), M = Number(process.argv[3] ?? 256), SYNC = process.argv[4] !== 'nosync';
/** Cold slow paths per block (never taken: a call with the registers written back, as a TLB miss does). */
const COLD = Number(process.env.COLD ?? 0);
const LIMIT = 1 << 20;
const BT = { params: [T.I32, T.I32, T.I32], results: [T.I32] };
const CT = { params: [T.I32, T.I32, T.I32, T.I32], results: [T.I32] };
const memory = new WebAssembly.Memory({ initial: 4 });
const big = new WebAssembly.Table({ initial: N + 16, element: 'anyfunc' });
const LINKS = 4096;
// runtime: chain(tr,tw,n,slot) -> big[slot]
const chain = new FuncBody(CT.params, CT.results); chain.get(0).get(1).get(2).get(3).tailCallIndirect(0);
const rtBytes = assembleModule([], [chain], { chain: 0 }, [BT], 't');
const rt = new WebAssembly.Instance(new WebAssembly.Module(rtBytes), { e: { m: memory, t: big } }).exports;
const perm = [...Array(N).keys()]; for (let i = N - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [perm[i], perm[j]] = [perm[j]!, perm[i]!]; }
const next = new Array<number>(N); for (let i = 0; i < N; i++) next[perm[i]!] = perm[(i + 1) % N]!;
/** Block `id`: its exit goes to next[id] through `chain` or its own table's entry 1 + localIdx. */
function body(id: number, mode: 'chain' | 'direct', localIdx: number): FuncBody {
  const f = new FuncBody(BT.params, BT.results);
  const r = [f.local(T.I64), f.local(T.I64), f.local(T.I64), f.local(T.I64)];
  const tot = f.local(T.I32), slot = f.local(T.I32);
  const rg = (id * 3) % 12;
  if (SYNC) r.forEach((l, k) => f.i32(0).mem(Op.i64_load, 8 * ((rg + k) % 16)).set(l));
  for (let c = 0; c <= COLD; c++) {
    f.get(r[0]!).get(r[1]!).op(Op.i64_add).set(r[0]!);
    f.get(r[2]!).get(r[0]!).op(Op.i64_xor).set(r[2]!);
    f.get(r[3]!).i64(1, 0).op(Op.i64_add).set(r[3]!);
    if (c === COLD) break;
    // a slow path the ring never takes (the flag word stays 0)
    f.i32(0).mem(Op.i32_load, 328);
    if (process.env.HINT) f.hint(0);
    f.begin(Op.if);
    r.forEach((l, k) => f.i32(0).get(l).mem(Op.i64_store, 8 * ((rg + k) % 16)));
    if (mode === 'chain') f.i32(0).i32(0).get(2).i32(0).i32(0).callIndirect(1).op(Op.drop);
    else f.i32(0).i32(0).get(2).i32(0).callIndirect(0).op(Op.drop);
    r.forEach((l, k) => f.i32(0).mem(Op.i64_load, 8 * ((rg + k) % 16)).set(l));
    f.op(Op.end);
  }
  if (SYNC) {
    f.i32(0).i32(1).mem(Op.i32_store, 256); f.i32(0).i32(8).mem(Op.i32_store, 260); f.i32(0).i32(0).mem(Op.i32_store, 264);
    f.i32(0).get(r[0]!).mem(Op.i64_store, 272); f.i32(0).get(r[1]!).mem(Op.i64_store, 280); f.i32(0).get(r[2]!).mem(Op.i64_store, 288);
    r.forEach((l, k) => f.i32(0).get(l).mem(Op.i64_store, 8 * ((rg + k) % 16)));
    f.i32(0).f64(id * 16 + 0x1000).mem(Op.f64_store, 304);
  }
  f.get(2).i32(7).op(Op.i32_add).tee(tot).i32(LIMIT).op(Op.i32_lt_u);
  f.i32(0).mem(Op.i32_load, LINKS + 8 * id).tee(slot).op(Op.i32_eqz).op(Op.i32_eqz).op(Op.i32_and);
  f.i32(0).mem(Op.i32_load, LINKS + 8 * id + 4).i32(0).mem(Op.i32_load, 320).op(Op.i32_eq).op(Op.i32_and);
  f.i32(0).i32(id).mem(Op.i32_store, 324);
  f.begin(Op.if);
  if (mode === 'chain') f.get(0).get(1).get(tot).get(slot).i32(0).tailCallIndirect(1);
  else f.get(0).get(1).get(tot).i32(1 + localIdx).tailCallIndirect(0);
  f.op(Op.end);
  f.get(tot).op(Op.return);
  f.resolveHints();
  return f;
}
const i32 = new Int32Array(memory.buffer);
function build(mode: 'chain' | 'direct'): WebAssembly.Table[] {
  const tables: WebAssembly.Table[] = [];
  for (let m0 = 0; m0 < N; m0 += M) {
    const ids = [...Array(Math.min(M, N - m0)).keys()].map((k) => m0 + k);
    const bodies = ids.map((id, k) => body(id, mode, k));
    const own = mode === 'chain' ? 1 : 1 + ids.length;
    const bytes = assembleModule([], bodies, {}, mode === 'chain' ? [BT, CT] : [BT], { own }, bodies.map((_b, i) => i));
    const ex = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: memory } }).exports as Record<string, { value: unknown } & WebAssembly.Table>;
    ids.forEach((id, k) => big.set(1 + id, ex[`g${k}`]!.value));
    tables[m0 / M] = ex.t!;
    if (mode === 'chain') ex.t!.set(0, rt.chain);
  }
  for (let id = 0; id < N; id++) {
    i32[(LINKS >> 2) + 2 * id] = 1 + next[id]!; i32[(LINKS >> 2) + 2 * id + 1] = 5;
    if (mode === 'direct') tables[Math.floor(id / M)]!.set(1 + (id % M), big.get(1 + next[id]!));
  }
  i32[320 >> 2] = 5;
  return tables;
}
for (const mode of ['chain', 'direct', 'chain', 'direct'] as const) {
  build(mode);
  const enter = big.get(1) as (a: number, b: number, c: number) => number;
  for (let w = 0; w < 20; w++) enter(0, 0, 0);
  const t0 = performance.now(); let n = 0;
  for (let w = 0; w < 40; w++) n += enter(0, 0, 0);
  const ns = (performance.now() - t0) * 1e6 / (n / 7);
  console.log(`${mode} N=${N} M=${M} sync=${SYNC}: ${ns.toFixed(1)} ns per transition`);
}
