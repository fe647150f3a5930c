/**
 * Segmentation: selector loads (MOV/POP Sreg), far JMP/CALL/RET, descriptor-table registers
 * (LGDT/LIDT/SGDT/SIDT/LLDT/LTR) and the descriptor probes LAR/LSL/VERR/VERW, with the SDM's
 * privilege and type checks in protected, compatibility and 64-bit mode, and plain base =
 * selector * 16 loads in real and V86 mode.
 *
 * Faults are thrown as CpuFault: #GP(selector) for bad descriptors, #NP/#SS(selector) for
 * not-present ones, #GP(0) for null selectors where they are not allowed. Call gates are
 * supported for far JMP/CALL (RET handles the outer return); task switches are not (#GP(selector)).
 */
import { CpuFault } from '../system-api.js';
import type { SystemHost } from '../system-api.js';
import { Efer, Mode, Reg, SReg, Vec, type CpuState } from '../state.js';
import { isCanonical, join64, setGpr64 } from './bits.js';
import {
  ATTR_CODE, ATTR_DB, ATTR_EC, ATTR_L, ATTR_P, ATTR_RW, ATTR_S, SYS_CALL_GATE, SYS_LDT, SYS_TSS16_AVAIL,
  SYS_TSS_AVAIL, attrDpl, desc, descAttr, descBase, descLimit, fetchDescriptor, getSp, gp,
  loadCache, loadNull, loadRealSegment, markAccessed, readSized, setSp, stackLin, writeSized,
  DATA_SREGS,
} from './descriptor.js';

function isRealLike(s: CpuState): boolean {
  return s.mode === Mode.Real || s.mode === Mode.V86;
}

/** MOV/POP to a data segment register or SS (CS is loaded only by far transfers: #UD). */
export function loadSegment(h: SystemHost, sreg: SReg, selector: number): void {
  const s = h.s;
  const sel = selector & 0xffff;
  if (sreg === SReg.CS) throw new CpuFault(Vec.UD);
  if (isRealLike(s)) {
    loadRealSegment(s, sreg, sel);
    return;
  }
  const cpl = s.cpl;
  const rpl = sel & 3;
  const idx = sel & 0xfffc;
  if (sreg === SReg.SS) {
    if (idx === 0) {
      // 64-bit mode allows a null SS below ring 3 when RPL = CPL.
      if (s.mode === Mode.Long64 && cpl !== 3 && rpl === cpl) {
        loadNullSs(s, sel);
        return;
      }
      throw gp(0);
    }
    if (rpl !== cpl || !fetchDescriptor(h, sel, false)) throw gp(idx);
    const attr = descAttr(desc.hi);
    if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) !== (ATTR_S | ATTR_RW) || attrDpl(attr) !== cpl) throw gp(idx);
    if (!(attr & ATTR_P)) throw new CpuFault(Vec.SS, idx);
    loadCache(s, sreg, sel, desc.lo, markAccessed(h));
    return;
  }
  if (idx === 0) {
    loadNull(s, sreg, sel, false);
    return;
  }
  if (!fetchDescriptor(h, sel, false)) throw gp(idx);
  const attr = descAttr(desc.hi);
  if (!(attr & ATTR_S)) throw gp(idx);
  if ((attr & (ATTR_CODE | ATTR_RW)) === ATTR_CODE) throw gp(idx); // execute-only code
  const conforming = (attr & (ATTR_CODE | ATTR_EC)) === (ATTR_CODE | ATTR_EC);
  if (!conforming && (rpl > attrDpl(attr) || cpl > attrDpl(attr))) throw gp(idx);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx);
  loadCache(s, sreg, sel, desc.lo, markAccessed(h));
}

/** A null SS in 64-bit mode (after an interrupt, SYSCALL-free ring switches, IRETQ): usable, base 0. */
export function loadNullSs(s: CpuState, sel: number, dpl: number = sel & 3): void {
  s.segSel[SReg.SS] = sel;
  s.segBase[SReg.SS] = 0;
  s.segLimit[SReg.SS] = 0xffffffff;
  s.segAttr[SReg.SS] = ATTR_DB | ATTR_P | ATTR_S | ATTR_RW | 1 | ((dpl & 3) << 5);
}

/**
 * Check a code-segment descriptor (in `desc`) as the target of a far JMP/CALL at privilege
 * `cpl` with requested privilege `rpl`; throws #GP/#NP with the selector.
 */
function checkDirectCodeTarget(s: CpuState, idx: number, rpl: number, cpl: number): void {
  const attr = descAttr(desc.hi);
  const dpl = attrDpl(attr);
  if (attr & ATTR_EC) {
    if (dpl > cpl) throw gp(idx);
  } else if (rpl > cpl || dpl !== cpl) {
    throw gp(idx);
  }
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx);
  if (s.efer & Efer.LMA && attr & ATTR_L && attr & ATTR_DB) throw gp(idx);
}

/** Target offset for a new CS: canonical 64-bit, or masked and limit-checked. */
function targetRip(attr: number, limit: number, offset: number, opsize: number, lma: boolean): number {
  if (lma && attr & ATTR_L) {
    if (!isCanonical(offset)) throw gp(0);
    return offset;
  }
  const rip = opsize === 2 ? offset & 0xffff : offset >>> 0;
  if (rip > limit) throw gp(0);
  return rip;
}

/** Load CS from `desc` with the given selector (RPL already set) and refresh the mode. */
function commitCs(h: SystemHost, sel: number): void {
  const s = h.s;
  loadCache(s, SReg.CS, sel, desc.lo, markAccessed(h));
  s.cpl = sel & 3;
}

/** JMP ptr16:16/32, JMP m16:16/32/64. */
export function farJump(h: SystemHost, selector: number, offset: number, opsize: 2 | 4 | 8): void {
  const s = h.s;
  const sel = selector & 0xffff;
  if (isRealLike(s)) {
    loadRealSegment(s, SReg.CS, sel);
    s.rip = opsize === 2 ? offset & 0xffff : offset >>> 0;
    h.modeChanged();
    return;
  }
  const idx = sel & 0xfffc;
  if (idx === 0) throw gp(0);
  if (!fetchDescriptor(h, sel, false)) throw gp(idx);
  const attr = descAttr(desc.hi);
  if (!(attr & ATTR_S)) {
    viaCallGate(h, sel, false, 0);
    return;
  }
  if (!(attr & ATTR_CODE)) throw gp(idx);
  const cpl = s.cpl;
  checkDirectCodeTarget(s, idx, sel & 3, cpl);
  const rip = targetRip(attr, descLimit(desc.lo, desc.hi), offset, opsize, (s.efer & Efer.LMA) !== 0);
  commitCs(h, idx | cpl);
  s.rip = rip;
  h.modeChanged();
}

/** CALL ptr16:16/32, CALL m16:16/32/64: pushes CS and the return offset (opsize each). */
export function farCall(h: SystemHost, selector: number, offset: number, opsize: 2 | 4 | 8, returnRip: number): void {
  const s = h.s;
  const sel = selector & 0xffff;
  const sp = getSp(s);
  const oldCs = s.segSel[SReg.CS]!;
  if (isRealLike(s)) {
    writeSized(h, stackLin(s, sp - opsize), opsize, oldCs, false);
    writeSized(h, stackLin(s, sp - 2 * opsize), opsize, returnRip, false);
    setSp(s, sp - 2 * opsize);
    loadRealSegment(s, SReg.CS, sel);
    s.rip = opsize === 2 ? offset & 0xffff : offset >>> 0;
    h.modeChanged();
    return;
  }
  const idx = sel & 0xfffc;
  if (idx === 0) throw gp(0);
  if (!fetchDescriptor(h, sel, false)) throw gp(idx);
  const attr = descAttr(desc.hi);
  if (!(attr & ATTR_S)) {
    viaCallGate(h, sel, true, returnRip);
    return;
  }
  if (!(attr & ATTR_CODE)) throw gp(idx);
  const cpl = s.cpl;
  checkDirectCodeTarget(s, idx, sel & 3, cpl);
  const rip = targetRip(attr, descLimit(desc.lo, desc.hi), offset, opsize, (s.efer & Efer.LMA) !== 0);
  const lo = desc.lo;
  const hi = desc.hi;
  const addr = desc.addr;
  writeSized(h, stackLin(s, sp - opsize), opsize, oldCs, false);
  writeSized(h, stackLin(s, sp - 2 * opsize), opsize, returnRip, false);
  setSp(s, sp - 2 * opsize);
  desc.lo = lo;
  desc.hi = hi;
  desc.addr = addr;
  commitCs(h, idx | cpl);
  s.rip = rip;
  h.modeChanged();
}

/**
 * Far JMP/CALL through a call gate (32/16-bit gates in legacy mode, 16-byte 64-bit gates in long
 * mode). CALL to a more privileged non-conforming segment switches to the TSS stack of the new
 * CPL and pushes the old SS:SP (plus the gate's parameter dwords/words in legacy mode), then CS
 * and the return offset. Task gates and TSS targets (task switches) are #GP(selector).
 */
function viaCallGate(h: SystemHost, gateSel: number, call: boolean, returnRip: number): void {
  const s = h.s;
  const lma = (s.efer & Efer.LMA) !== 0;
  const gateIdx = gateSel & 0xfffc;
  const gateAttr = descAttr(desc.hi);
  const type = gateAttr & 0x1f;
  if (lma ? type !== SYS_CALL_GATE : type !== SYS_CALL_GATE && type !== 0x4) throw gp(gateIdx);
  const cpl = s.cpl;
  const gateDpl = attrDpl(gateAttr);
  if (gateDpl < cpl || gateDpl < (gateSel & 3)) throw gp(gateIdx);
  if (!(gateAttr & ATTR_P)) throw new CpuFault(Vec.NP, gateIdx);
  const gLo = desc.lo;
  const gHi = desc.hi;
  let target = ((gLo & 0xffff) | (gHi & 0xffff0000)) >>> 0;
  const size: 2 | 4 | 8 = lma ? 8 : type === SYS_CALL_GATE ? 4 : 2;
  if (lma) {
    if (!fetchDescriptor(h, gateSel, true)) throw gp(gateIdx);
    target = join64(target, desc.baseHi);
    if (h.readLin32(desc.addr + 12, true) & 0x1f00) throw gp(gateIdx); // upper half type must be 0
  } else if (size === 2) {
    target &= 0xffff;
  }
  const params = gHi & 0x1f;
  const csSel = gLo >>> 16;
  const csIdx = csSel & 0xfffc;
  if (csIdx === 0) throw gp(0);
  if (!fetchDescriptor(h, csSel, false)) throw gp(csIdx);
  const csAttr = descAttr(desc.hi);
  const dpl = attrDpl(csAttr);
  if ((csAttr & (ATTR_S | ATTR_CODE)) !== (ATTR_S | ATTR_CODE) || dpl > cpl) throw gp(csIdx);
  const conforming = (csAttr & ATTR_EC) !== 0;
  if (!call && !conforming && dpl !== cpl) throw gp(csIdx);
  if (lma && (!(csAttr & ATTR_L) || csAttr & ATTR_DB)) throw gp(csIdx);
  if (!(csAttr & ATTR_P)) throw new CpuFault(Vec.NP, csIdx);
  const rip = targetRip(csAttr, descLimit(desc.lo, desc.hi), target, size, lma);
  const csLo = desc.lo;
  const csHi = desc.hi;
  const csAddr = desc.addr;
  const restoreCs = (): void => {
    desc.lo = csLo;
    desc.hi = csHi;
    desc.addr = csAddr;
  };
  const newCpl = conforming ? cpl : dpl;
  if (!call) {
    restoreCs();
    commitCs(h, csIdx | cpl);
    s.rip = rip;
    h.modeChanged();
    return;
  }
  const oldCs = s.segSel[SReg.CS]!;
  if (newCpl === cpl) {
    const sp = getSp(s);
    writeSized(h, stackLin(s, sp - size), size, oldCs, false);
    writeSized(h, stackLin(s, sp - 2 * size), size, returnRip, false);
    setSp(s, sp - 2 * size);
    restoreCs();
    commitCs(h, csIdx | cpl);
    s.rip = rip;
    h.modeChanged();
    return;
  }
  // Inner privilege: new stack from the TSS.
  const oldSs = s.segSel[SReg.SS]!;
  const oldSp = getSp(s);
  // the frame is supervisor data: implicit (SMAP ignores AC) when pushed on leaving CPL 3, else explicit
  const sup = newCpl < 3 && cpl === 3;
  if (lma) {
    const off = 4 + newCpl * 8;
    if (off + 7 > s.trLimit) throw new CpuFault(Vec.TS, s.trSel & 0xfffc);
    let rsp = readSized(h, s.trBase + off, 8, true);
    if (!isCanonical(rsp)) throw new CpuFault(Vec.SS, 0);
    writeSized(h, rsp - 8, 8, oldSs, sup);
    writeSized(h, rsp - 16, 8, oldSp, sup);
    writeSized(h, rsp - 24, 8, oldCs, sup);
    writeSized(h, rsp - 32, 8, returnRip, sup);
    rsp -= 32;
    loadNullSs(s, newCpl);
    restoreCs();
    commitCs(h, csIdx | newCpl);
    setGpr64(s.gpr, Reg.RSP, rsp);
    s.rip = rip;
    h.modeChanged();
    return;
  }
  const tss32 = (s.trAttr & 8) !== 0;
  const off = tss32 ? 4 + newCpl * 8 : 2 + newCpl * 4;
  if (off + (tss32 ? 5 : 3) > s.trLimit) throw new CpuFault(Vec.TS, s.trSel & 0xfffc);
  let sp = tss32 ? h.readLin32(s.trBase + off, true) >>> 0 : h.readLin16(s.trBase + off, true);
  const ssSel = h.readLin16(s.trBase + off + (tss32 ? 4 : 2), true);
  const ssIdx = ssSel & 0xfffc;
  if (ssIdx === 0) throw new CpuFault(Vec.TS, 0);
  if ((ssSel & 3) !== newCpl || !fetchDescriptor(h, ssSel, false)) throw new CpuFault(Vec.TS, ssIdx);
  const ssAttr = descAttr(desc.hi);
  if ((ssAttr & (ATTR_S | ATTR_CODE | ATTR_RW)) !== (ATTR_S | ATTR_RW) || attrDpl(ssAttr) !== newCpl) {
    throw new CpuFault(Vec.TS, ssIdx);
  }
  if (!(ssAttr & ATTR_P)) throw new CpuFault(Vec.SS, ssIdx);
  const ssLo = desc.lo;
  const ssHi = desc.hi;
  const ssBase = descBase(ssLo, ssHi);
  const ssMask = ssAttr & ATTR_DB ? 0xffffffff : 0xffff;
  const push = (v: number): void => {
    sp = (sp - size) >>> 0;
    writeSized(h, ssBase + (sp & ssMask), size, v, sup);
  };
  push(oldSs);
  push(oldSp);
  for (let i = params - 1; i >= 0; i--) push(readSized(h, stackLin(s, oldSp + i * size), size, false));
  push(oldCs);
  push(returnRip);
  loadCache(s, SReg.SS, ssSel, ssLo, ssHi | 0x100);
  if (ssMask === 0xffff) s.gpr[2 * Reg.RSP] = (s.gpr[2 * Reg.RSP]! & ~0xffff) | (sp & 0xffff);
  else s.gpr[2 * Reg.RSP] = sp | 0;
  restoreCs();
  commitCs(h, csIdx | newCpl);
  s.rip = rip;
  h.modeChanged();
}

/**
 * After a return to an outer privilege level: data segment registers the new CPL may not use
 * become null (SDM: RET/IRET "if DPL < CPL and not conforming code, load null").
 */
export function nullInaccessibleSegments(s: CpuState): void {
  for (const sreg of DATA_SREGS) {
    if ((s.segSel[sreg]! & 0xfffc) === 0) continue;
    const attr = s.segAttr[sreg]!;
    const conformingCode = (attr & (ATTR_CODE | ATTR_EC)) === (ATTR_CODE | ATTR_EC);
    if (!conformingCode && attrDpl(attr) < s.cpl) loadNull(s, sreg, 0, sreg === SReg.FS || sreg === SReg.GS);
  }
}

/**
 * Check the SS selector popped by RET/IRET for a return to privilege `rpl`; leaves the
 * descriptor in `desc`. Returns false for an allowed null SS (64-bit target below ring 3).
 */
export function checkReturnSs(h: SystemHost, ssSel: number, rpl: number, target64: boolean): boolean {
  const idx = ssSel & 0xfffc;
  if (idx === 0) {
    if (target64 && rpl !== 3) return false; // (like QEMU, the null selector's RPL is not checked)
    throw gp(0);
  }
  if ((ssSel & 3) !== rpl || !fetchDescriptor(h, ssSel, false)) throw gp(idx);
  const attr = descAttr(desc.hi);
  if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) !== (ATTR_S | ATTR_RW) || attrDpl(attr) !== rpl) throw gp(idx);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.SS, idx);
  return true;
}

/** Check a code segment (in `desc`) as the target of RET/IRET with selector RPL `rpl`. */
export function checkReturnCs(s: CpuState, idx: number, rpl: number): void {
  const attr = descAttr(desc.hi);
  if (!(attr & ATTR_S) || !(attr & ATTR_CODE)) throw gp(idx);
  const dpl = attrDpl(attr);
  if (attr & ATTR_EC ? dpl > rpl : dpl !== rpl) throw gp(idx);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx);
  if (s.efer & Efer.LMA && attr & ATTR_L && attr & ATTR_DB) throw gp(idx);
}

/** RET far [imm16]: pops offset and CS (opsize each), then `popBytes` of parameters. */
export function farReturn(h: SystemHost, opsize: 2 | 4 | 8, popBytes: number): void {
  const s = h.s;
  const sp = getSp(s);
  const rawRip = readSized(h, stackLin(s, sp), opsize, false);
  const sel = readSized(h, stackLin(s, sp + opsize), opsize, false) & 0xffff;
  if (isRealLike(s)) {
    loadRealSegment(s, SReg.CS, sel);
    s.rip = opsize === 2 ? rawRip & 0xffff : rawRip >>> 0;
    setSp(s, sp + 2 * opsize + popBytes);
    h.modeChanged();
    return;
  }
  const idx = sel & 0xfffc;
  const rpl = sel & 3;
  const cpl = s.cpl;
  if (idx === 0) throw gp(0);
  if (rpl < cpl) throw gp(idx);
  if (!fetchDescriptor(h, sel, false)) throw gp(idx);
  checkReturnCs(s, idx, rpl);
  const lma = (s.efer & Efer.LMA) !== 0;
  const csAttr = descAttr(desc.hi);
  const rip = targetRip(csAttr, descLimit(desc.lo, desc.hi), rawRip, opsize, lma);
  const csLo = desc.lo;
  const csHi = desc.hi;
  const csAddr = desc.addr;
  if (rpl === cpl) {
    setSp(s, sp + 2 * opsize + popBytes);
    desc.lo = csLo;
    desc.hi = csHi;
    desc.addr = csAddr;
    commitCs(h, sel);
    s.rip = rip;
    h.modeChanged();
    return;
  }
  // Return to an outer privilege level: pop SS:SP after the parameters.
  const newSp = readSized(h, stackLin(s, sp + 2 * opsize + popBytes), opsize, false);
  const ssSel = readSized(h, stackLin(s, sp + 3 * opsize + popBytes), opsize, false) & 0xffff;
  const target64 = lma && (csAttr & ATTR_L) !== 0;
  const ssUsable = checkReturnSs(h, ssSel, rpl, target64);
  if (ssUsable) loadCache(s, SReg.SS, ssSel, desc.lo, markAccessed(h));
  else loadNullSs(s, ssSel, rpl);
  desc.lo = csLo;
  desc.hi = csHi;
  desc.addr = csAddr;
  commitCs(h, sel);
  h.modeChanged();
  setSp(s, newSp + popBytes);
  s.rip = rip;
  nullInaccessibleSegments(s);
}

// ---- descriptor-table registers ------------------------------------------------------------

function requireCpl0(s: CpuState): void {
  if (s.mode === Mode.V86 || (s.mode !== Mode.Real && s.cpl !== 0)) throw gp(0);
}

function readTableReg(h: SystemHost, lin: number, opsize: number): [number, number] {
  const limit = h.readLin16(lin, false);
  let base: number;
  if (h.s.mode === Mode.Long64) {
    const lo = h.readLin64(lin + 2, false);
    base = join64(lo, h.scratchHi);
    if (!isCanonical(base)) throw gp(0);
  } else {
    base = h.readLin32(lin + 2, false) >>> 0;
    if (opsize === 2) base &= 0xffffff;
  }
  return [base, limit];
}

/** LGDT m16&32 / m16&64. */
export function lgdt(h: SystemHost, lin: number, opsize: number): void {
  requireCpl0(h.s);
  const [base, limit] = readTableReg(h, lin, opsize);
  h.s.gdtrBase = base;
  h.s.gdtrLimit = limit;
}

/** LIDT m16&32 / m16&64. */
export function lidt(h: SystemHost, lin: number, opsize: number): void {
  requireCpl0(h.s);
  const [base, limit] = readTableReg(h, lin, opsize);
  h.s.idtrBase = base;
  h.s.idtrLimit = limit;
}

function storeTableReg(h: SystemHost, lin: number, base: number, limit: number): void {
  h.writeLin16(lin, limit, false);
  if (h.s.mode === Mode.Long64) writeSized(h, lin + 2, 8, base, false);
  else h.writeLin32(lin + 2, base >>> 0, false);
}

/** SGDT (no UMIP: allowed at any CPL). */
export function sgdt(h: SystemHost, lin: number): void {
  storeTableReg(h, lin, h.s.gdtrBase, h.s.gdtrLimit);
}

export function sidt(h: SystemHost, lin: number): void {
  storeTableReg(h, lin, h.s.idtrBase, h.s.idtrLimit);
}

/** Base of a system descriptor in `desc` (64-bit in long mode). */
function systemBase(s: CpuState): number {
  const base = descBase(desc.lo, desc.hi);
  return s.efer & Efer.LMA ? join64(base, desc.baseHi) : base;
}

/** LLDT r/m16. */
export function lldt(h: SystemHost, selector: number): void {
  const s = h.s;
  if (s.mode === Mode.Real || s.mode === Mode.V86) throw new CpuFault(Vec.UD);
  requireCpl0(s);
  const sel = selector & 0xffff;
  const idx = sel & 0xfffc;
  if (idx === 0) {
    s.ldtrSel = sel;
    s.ldtrBase = 0;
    s.ldtrLimit = 0;
    return;
  }
  const lma = (s.efer & Efer.LMA) !== 0;
  if (sel & 4 || !fetchDescriptor(h, sel, lma)) throw gp(idx);
  const attr = descAttr(desc.hi);
  if ((attr & (ATTR_S | 0xf)) !== SYS_LDT) throw gp(idx);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx);
  const base = systemBase(s);
  if (lma && !isCanonical(base)) throw gp(idx);
  s.ldtrSel = sel;
  s.ldtrBase = base;
  s.ldtrLimit = descLimit(desc.lo, desc.hi);
}

/** LTR r/m16: loads an available TSS and marks its descriptor busy. */
export function ltr(h: SystemHost, selector: number): void {
  const s = h.s;
  if (s.mode === Mode.Real || s.mode === Mode.V86) throw new CpuFault(Vec.UD);
  requireCpl0(s);
  const sel = selector & 0xffff;
  const idx = sel & 0xfffc;
  if (idx === 0) throw gp(0);
  const lma = (s.efer & Efer.LMA) !== 0;
  if (sel & 4 || !fetchDescriptor(h, sel, lma)) throw gp(idx);
  const attr = descAttr(desc.hi);
  const type = attr & (ATTR_S | 0xf);
  if (type !== SYS_TSS_AVAIL && (lma || type !== SYS_TSS16_AVAIL)) throw gp(idx);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx);
  const base = systemBase(s);
  if (lma && !isCanonical(base)) throw gp(idx);
  desc.hi |= 0x200; // busy
  h.writeLin32(desc.addr + 4, desc.hi >>> 0, true);
  s.trSel = sel;
  s.trBase = base;
  s.trLimit = descLimit(desc.lo, desc.hi);
  s.trAttr = descAttr(desc.hi);
}

// ---- LAR / LSL / VERR / VERW ---------------------------------------------------------------

/** Fetch for the probe instructions: false when null, out of limits, or not visible at CPL/RPL. */
function probe(h: SystemHost, selector: number): boolean {
  const s = h.s;
  if (s.mode === Mode.Real || s.mode === Mode.V86) throw new CpuFault(Vec.UD);
  const sel = selector & 0xffff;
  if ((sel & 0xfffc) === 0 || !fetchDescriptor(h, sel, false)) return false;
  const attr = descAttr(desc.hi);
  const conformingCode = (attr & (ATTR_S | ATTR_CODE | ATTR_EC)) === (ATTR_S | ATTR_CODE | ATTR_EC);
  if (conformingCode) return true;
  const dpl = attrDpl(attr);
  return dpl >= s.cpl && dpl >= (sel & 3);
}

const LAR_SYS_LEGACY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 0xb) | (1 << 0xc);
const LAR_SYS_LONG = (1 << 2) | (1 << 9) | (1 << 0xb) | (1 << 0xc);
const LSL_SYS_LEGACY = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 9) | (1 << 0xb);
const LSL_SYS_LONG = (1 << 2) | (1 << 9) | (1 << 0xb);

function systemTypeOk(h: SystemHost, mask: number): boolean {
  const attr = descAttr(desc.hi);
  if (attr & ATTR_S) return true;
  return ((mask >>> (attr & 0xf)) & 1) !== 0;
}

/** LAR: the access-rights dword (high dword & 0x00f0ff00), or -1 (ZF = 0). */
export function lar(h: SystemHost, selector: number): number {
  if (!probe(h, selector)) return -1;
  if (!systemTypeOk(h, h.s.efer & Efer.LMA ? LAR_SYS_LONG : LAR_SYS_LEGACY)) return -1;
  return (desc.hi & 0x00f0ff00) >>> 0;
}

/** LSL: the byte-granular segment limit, or -1 (ZF = 0). */
export function lsl(h: SystemHost, selector: number): number {
  if (!probe(h, selector)) return -1;
  if (!systemTypeOk(h, h.s.efer & Efer.LMA ? LSL_SYS_LONG : LSL_SYS_LEGACY)) return -1;
  return descLimit(desc.lo, desc.hi);
}

/** VERR: readable code or data segment visible at CPL/RPL. */
export function verr(h: SystemHost, selector: number): boolean {
  if (!probe(h, selector)) return false;
  const attr = descAttr(desc.hi);
  if (!(attr & ATTR_S)) return false;
  return !(attr & ATTR_CODE) || (attr & ATTR_RW) !== 0;
}

/** VERW: writable data segment visible at CPL/RPL. */
export function verw(h: SystemHost, selector: number): boolean {
  if (!probe(h, selector)) return false;
  const attr = descAttr(desc.hi);
  return (attr & (ATTR_S | ATTR_CODE | ATTR_RW)) === (ATTR_S | ATTR_RW);
}
