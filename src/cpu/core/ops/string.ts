/**
 * String instructions: MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS with REP/REPE/REPNE, in chunks of
 * REP_CHUNK iterations (the engine gets its turn in between), and the fast paths of forward
 * REP MOVS/STOS over RAM pages.
 */
import type { Cpu } from '../cpu.js';
import { TLB_MASK, P_SR, P_UR, P_SW, P_UW } from '../consts.js';
import { checkIo } from '../../system/io.js';
import { getReg, setReg, segLin, readMem, writeMem, areg, setAreg, wrapA } from './operands.js';
import { alu } from './alu.js';



// ==== string instructions ===================================================================

/** Iterations executed per step for REP before yielding (interrupt latency). */
const REP_CHUNK = 65536;

export function stringOp(c: Cpu, op: number, sz: number): void {
  const rep = c.rep;
  const s = c.s;
  const delta = s.rflagsRest & 0x400 ? -sz : sz;
  const srcSeg = c.seg >= 0 ? c.seg : 3;
  let count = rep ? areg(c, 1) : 1;
  if (count === 0) return;
  let limit = REP_CHUNK;
  // fast paths: forward REP MOVS / STOS over RAM
  if (rep && delta > 0 && (op === 0xa4 || op === 0xaa)) {
    // fastString keeps RCX in step with RDI/RSI chunk by chunk: a #PF on a later page restarts
    // the instruction with the registers saying how far it got
    const done = fastString(c, op, sz, count);
    if (done > 0) {
      count -= done;
      if (count === 0) return;
      limit -= done;
    }
  }
  for (;;) {
    switch (op) {
      case 0xa4: { // MOVS
        const si = areg(c, 6);
        const di = areg(c, 7);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        writeMem(c, segLin(c, 0, di), sz, v, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xaa: { // STOS
        const di = areg(c, 7);
        const v = getReg(c, 0, sz);
        writeMem(c, segLin(c, 0, di), sz, v, c.hi);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xac: { // LODS
        const si = areg(c, 6);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        setReg(c, 0, sz, v, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        break;
      }
      case 0xa6: { // CMPS
        const si = areg(c, 6);
        const di = areg(c, 7);
        const a = readMem(c, segLin(c, srcSeg, si), sz);
        const ah = c.hi;
        const b = readMem(c, segLin(c, 0, di), sz);
        alu(c, 7, sz, a, ah, b, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xae: { // SCAS
        const di = areg(c, 7);
        const a = getReg(c, 0, sz);
        const ah = c.hi;
        const b = readMem(c, segLin(c, 0, di), sz);
        alu(c, 7, sz, a, ah, b, c.hi);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0x6c: { // INS
        const port = s.gpr[4]! & 0xffff;
        checkIo(c, port, sz as 1 | 2 | 4);
        const di = areg(c, 7);
        const lin = segLin(c, 0, di);
        c.probeWrite(lin, sz);
        const v = c.portRead(port, sz as 1 | 2 | 4);
        writeMem(c, lin, sz, v, 0);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      default: { // 0x6e OUTS
        const port = s.gpr[4]! & 0xffff;
        checkIo(c, port, sz as 1 | 2 | 4);
        const si = areg(c, 6);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        c.portWrite(port, sz as 1 | 2 | 4, v);
        setAreg(c, 6, wrapA(c, si + delta));
        break;
      }
    }
    if (!rep) return;
    count = wrapA(c, count - 1);
    setAreg(c, 1, count);
    if (count === 0) return;
    if (op === 0xa6 || op === 0xae) {
      const z = c.zf();
      if (rep === 0xf3 ? z === 0 : z !== 0) return;
    }
    if (--limit <= 0) {
      // Continue on the next step, after the engine has had its turn: a guest-chosen count
      // (up to 2^64) must not hold the host's event loop for the whole instruction.
      c.ip = c.startRip;
      c.requestExit();
      return;
    }
  }
}

/**
 * REP MOVS/STOS forward over RAM pages, page chunk by page chunk. Returns the number of elements
 * done (RSI, RDI and RCX updated after every chunk, so that a fault on the next page restarts
 * the instruction where it got to).
 */
function fastString(c: Cpu, op: number, sz: number, count: number): number {
  if (c.adsize !== 8 && !c.long && c.adsize !== 4) return 0;
  const srcSeg = c.seg >= 0 ? c.seg : 3;
  let done = 0;
  const ram = c.ram;
  const maxElems = REP_CHUNK;
  while (done < count && done < maxElems) {
    const di = areg(c, 7);
    const dlin = segLin(c, 0, di);
    const doff = dlin & 0xfff;
    if (doff & (sz - 1)) return done; // keep elements inside pages
    const dst = pageOffset(c, dlin, true);
    if (dst < 0) return done;
    let n = Math.min(count - done, (4096 - doff) / sz, maxElems - done);
    if (op === 0xa4) {
      const si = areg(c, 6);
      const slin = segLin(c, srcSeg, si);
      const soff = slin & 0xfff;
      if (soff & (sz - 1)) return done;
      const src = pageOffset(c, slin, false);
      if (src < 0) return done;
      n = Math.min(n, (4096 - soff) / sz);
      const len = n * sz;
      // forward element copy == memmove unless dst overlaps ahead of src
      if (dst > src && dst < src + len) return done;
      c.checkCode(dst, len);
      ram.copyWithin(dst, src, src + len);
      setAreg(c, 6, wrapA(c, si + len));
    } else {
      const len = n * sz;
      const g = c.s.gpr;
      c.checkCode(dst, len);
      if (sz === 1) ram.fill(g[0]! & 0xff, dst, dst + len);
      else {
        const lo = g[0]!;
        const hi = g[1]!;
        const v = c.ramView;
        if (lo === 0 && (sz < 8 || hi === 0)) ram.fill(0, dst, dst + len);
        else if (sz === 2) for (let k = 0; k < len; k += 2) v.setUint16(dst + k, lo, true);
        else if (sz === 4) for (let k = 0; k < len; k += 4) v.setInt32(dst + k, lo, true);
        else for (let k = 0; k < len; k += 8) { v.setInt32(dst + k, lo, true); v.setInt32(dst + k + 4, hi, true); }
      }
    }
    setAreg(c, 7, wrapA(c, di + n * sz));
    done += n;
    // RCX too, before the next page is touched (its #PF restarts the instruction from here)
    setAreg(c, 1, count - done);
  }
  return done;
}

/** RAM offset of the byte at `lin` (translating, faulting as an access would), or -1 if not RAM. */
function pageOffset(c: Cpu, lin: number, write: boolean): number {
  const vpn = Math.floor(lin / 4096);
  const i = vpn & TLB_MASK;
  const user = c.s.cpl === 3;
  const need = write ? (user ? P_UW : P_SW) : user ? P_UR : P_SR;
  if (!(c.tlbTag[i] === vpn && c.tlbPerm[i]! & need)) {
    if (write) c.probeWrite(lin, 1);
    else c.probeRead(lin, 1);
  }
  const a = c.tlbAddr[i]!;
  if (c.tlbTag[i] !== vpn || a < 0) return -1;
  return a + (lin & 0xfff);
}
