/**
 * The runtime's relink: renewing a stale exit link (or indirect-branch cache entry) in wasm.
 *
 * A link holds under the translation key it was made with (TLB epoch and CPL, or the global
 * epoch for code on global pages). Every CR3 write bumps the TLB epoch, so after a context
 * switch each link into user code used to go back to the host once: find the block again (a
 * fast-cache lookup checked against the TLB), link it, enter it — ~126 k host round trips per
 * 200 × /bin/true. The check the host makes is small enough to make here: the TLB entry of the
 * target's page (the interpreter's own, in the arena) maps it to the RAM the block was made from
 * (the slot map, arena.slotPhys) with execute permission for the link's CPL — and, for a link
 * of the global class, the page is still global, since that key survives CR3 writes. Then the
 * link takes the current key and the block runs; otherwise the host does what it did before.
 *
 * The TLB entry exists once anything touched the page under the new CR3 (the host's first
 * dispatch there fills it), so the first link into each page still goes to the host, the rest
 * of that page's links are renewed here. An INVLPG of a linked page still bumps the epoch
 * (Cpu.codePages is set when the host first made the link and is never cleared).
 */
import { P_GLOBAL, P_SX, P_UX, TLB_MASK } from '../core/consts.js';
import { A_GKEY, A_KEY, A_RIP, A_TLB_ADDR, A_TLB_PERM, A_TLB_TAG, slotPhysOffset } from './arena.js';
import { FuncBody, Op, T } from './encoder.js';

/**
 * relink(needR, needW, n, keyAddr, slot) -> instructions in all: the key word at keyAddr is stale;
 * renew it and tail-call table[slot] when the TLB still leads to that block, else return n (the
 * host links the exit, whose number the block stored in A_EXIT, as before).
 */
export function relinkBody(base: number): FuncBody {
  const P_N = 2, P_KEYADDR = 3, P_SLOT = 4;
  const f = new FuncBody([T.I32, T.I32, T.I32, T.I32, T.I32], [T.I32]);
  const key = f.local(T.I32);
  const cur = f.local(T.I32);
  const rip = f.local(T.I64);
  const vpn = f.local(T.I64);
  const ti = f.local(T.I32);
  const perm = f.local(T.I32);
  // the current key of the link's class (bit 2: global)
  f.get(P_KEYADDR).mem(Op.i32_load, 0).set(key);
  f.i32(0).mem(Op.i32_load, base + A_GKEY).i32(0).mem(Op.i32_load, base + A_KEY);
  f.get(key).i32(4).op(Op.i32_and).op(Op.select).set(cur);
  // made at another CPL (the block's code depends on it): the host finds the right one
  f.get(key).get(cur).op(Op.i32_xor).i32(7).op(Op.i32_and);
  f.begin(Op.if).get(P_N).op(Op.return).op(Op.end);
  // the TLB entry of the target's page: the same page, executable at this CPL
  f.i32(0).mem(Op.f64_load, base + A_RIP).truncSat().tee(rip);
  f.i64(12, 0).op(Op.i64_shr_s).tee(vpn);
  f.op(Op.i32_wrap_i64).i32(TLB_MASK).op(Op.i32_and).set(ti);
  f.get(ti).i32(3).op(Op.i32_shl).mem(Op.f64_load, base + A_TLB_TAG);
  f.get(vpn).op(Op.f64_convert_i64_s).op(Op.f64_eq);
  f.get(ti).mem(Op.i32_load8_u, base + A_TLB_PERM).tee(perm);
  f.i32(P_UX).i32(P_SX).get(key).i32(3).op(Op.i32_and).i32(3).op(Op.i32_eq).op(Op.select);
  f.op(Op.i32_and).i32(0).op(Op.i32_ne).op(Op.i32_and);
  // a global-class key survives CR3 writes: only for a page that is global now
  f.get(key).i32(4).op(Op.i32_and).op(Op.i32_eqz);
  f.get(perm).i32(P_GLOBAL).op(Op.i32_and).i32(0).op(Op.i32_ne).op(Op.i32_or).op(Op.i32_and);
  // ... mapped to the RAM the block was translated from
  f.get(ti).i32(3).op(Op.i32_shl).mem(Op.f64_load, base + A_TLB_ADDR);
  f.get(rip).i64(0xfff, 0).op(Op.i64_and).op(Op.f64_convert_i64_s).op(Op.f64_add);
  f.get(P_SLOT).i32(3).op(Op.i32_shl).mem(Op.f64_load, base + slotPhysOffset()).op(Op.f64_eq);
  f.op(Op.i32_and).op(Op.i32_eqz);
  f.begin(Op.if).get(P_N).op(Op.return).op(Op.end);
  f.get(P_KEYADDR).get(cur).mem(Op.i32_store, 0);
  f.get(0).get(1).get(P_N).get(P_SLOT).tailCallIndirect(0);
  return f;
}
