/**
 * Exception and interrupt delivery (real-mode IVT, protected-mode 16/32-bit gates, long-mode
 * 64-bit gates with IST), IRET in every mode, and the double-fault rules.
 *
 * Delivery is all-or-nothing for registers: every read (IDT, GDT, TSS) and every stack write
 * happens before any register changes, so a fault during delivery leaves the interrupted
 * state intact for the #DF (or the serial delivery of the second exception).
 *
 * Nested faults (SDM vol. 3 table 6-5): contributory = #DE #TS #NP #SS #GP; a contributory
 * fault while delivering a contributory one, or a #PF/contributory fault while delivering a
 * #PF, becomes #DF; any fault while delivering #DF is a triple fault. Faults while delivering
 * a *software* interrupt (INT n, INT3, INTO) propagate to the caller: they are ordinary faults
 * of that instruction (the core then delivers them with the INT instruction's RIP).
 *
 * Task gates and task switches are not implemented (#GP with the IDT index).
 */
import { CpuFault, EventKind, TripleFault, type SystemHost } from '../system-api.js';
import { Efer, Flag, Mode, Reg, SReg, Vec, type CpuState } from '../state.js';
import { getGpr64, isCanonical, setGpr64 } from './bits.js';
import {
  ATTR_CODE, ATTR_DB, ATTR_EC, ATTR_L, ATTR_P, ATTR_RW, ATTR_S, attrDpl, desc, descAttr, descBase,
  descLimit, fetchDescriptor, getSp, gp, loadCache, loadRealSegment, readSized, setSp, stackLin,
  stackWidth, writeSized,
  DATA_SREGS,
} from './descriptor.js';
import { checkReturnCs, checkReturnSs, loadNullSs, nullInaccessibleSegments } from './segments.js';

const enum FaultClass { Benign = 0, Contributory = 1, PageFault = 2 }

function faultClass(vector: number): FaultClass {
  switch (vector) {
    case Vec.DE: case Vec.TS: case Vec.NP: case Vec.SS: case Vec.GP:
      return FaultClass.Contributory;
    case Vec.PF:
      return FaultClass.PageFault;
    default:
      return FaultClass.Benign;
  }
}

/** CPUs that delivered an NMI and have not executed IRET since (NMIs are blocked meanwhile). */
const nmiBlockedSet = new WeakSet<CpuState>();

/** True while NMIs are blocked (after NMI delivery, until the next IRET). */
export function isNmiBlocked(s: CpuState): boolean {
  return nmiBlockedSet.has(s);
}

/** Set or clear NMI blocking (snapshot restore). */
export function setNmiBlocked(s: CpuState, blocked: boolean): void {
  if (blocked) nmiBlockedSet.add(s);
  else nmiBlockedSet.delete(s);
}

/**
 * Deliver an event. `errorCode` is -1 when none is pushed; `returnRip` is the RIP saved in the
 * frame (faulting instruction for faults, next instruction for traps, INT n and interrupts).
 */
export function deliver(h: SystemHost, vector: number, errorCode: number, kind: EventKind, returnRip: number): void {
  if (kind === EventKind.Software) {
    deliverOnce(h, vector, -1, kind, returnRip);
    return;
  }
  try {
    deliverOnce(h, vector, errorCode, kind, returnRip);
  } catch (e) {
    if (!(e instanceof CpuFault)) throw e;
    if (kind === EventKind.Exception && vector === Vec.DF) {
      throw new TripleFault(`triple fault: exception ${e.vector} while delivering #DF`);
    }
    const first = kind === EventKind.Exception ? faultClass(vector) : FaultClass.Benign;
    const second = faultClass(e.vector);
    const double =
      (first === FaultClass.Contributory && second === FaultClass.Contributory) ||
      (first === FaultClass.PageFault && second !== FaultClass.Benign);
    if (double) deliver(h, Vec.DF, 0, EventKind.Exception, returnRip);
    else deliver(h, e.vector, e.errorCode, EventKind.Exception, returnRip);
  }
}

/**
 * Fault-class exceptions: the RFLAGS image in their frame has RF set, so that the faulting
 * instruction, once the handler returns to it, does not hit an instruction breakpoint again.
 * (#DB is left out: an instruction breakpoint pushes RF as it is, and its trap forms are not
 * faults; #DF and #MC are aborts.)
 */
function isFault(vector: number): boolean {
  return vector !== Vec.DB && vector !== Vec.DF && vector !== Vec.MC && vector !== Vec.BP && vector !== Vec.OF;
}

function deliverOnce(h: SystemHost, vector: number, errorCode: number, kind: EventKind, returnRip: number): void {
  const s = h.s;
  const ext = kind === EventKind.Software ? 0 : 1;
  const rfBefore = s.rflagsRest & Flag.RF;
  if (kind === EventKind.Exception && isFault(vector)) s.rflagsRest |= Flag.RF; // cleared by the delivery
  try {
    if (s.mode === Mode.Real) deliverReal(h, vector, returnRip);
    else if (s.efer & Efer.LMA) deliverLong(h, vector, errorCode, kind, returnRip, ext);
    else deliverProtected(h, vector, errorCode, kind, returnRip, ext);
  } catch (e) {
    s.rflagsRest = (s.rflagsRest & ~Flag.RF) | rfBefore;
    throw e;
  }
  if (kind === EventKind.Nmi) nmiBlockedSet.add(s);
}

function deliverReal(h: SystemHost, vector: number, returnRip: number): void {
  const s = h.s;
  if (vector * 4 + 3 > s.idtrLimit) throw gp(vector * 8 + 2);
  const entry = h.readLin32(s.idtrBase + vector * 4, true);
  const flags = h.getRflags();
  const sp = getSp(s);
  h.writeLin16(stackLin(s, sp - 2), flags & 0xffff, true);
  h.writeLin16(stackLin(s, sp - 4), s.segSel[SReg.CS]!, true);
  h.writeLin16(stackLin(s, sp - 6), returnRip & 0xffff, true);
  setSp(s, sp - 6);
  h.setRflags(0, Flag.IF | Flag.TF | Flag.AC | Flag.RF);
  loadRealSegment(s, SReg.CS, entry >>> 16);
  s.rip = entry & 0xffff;
  h.modeChanged();
}

/** Read the IDT gate for `vector` (8 or 16 bytes) and apply the gate checks; returns the gate type. */
let gateLo = 0;
let gateHi = 0;
let gateHi2 = 0;
function readGate(h: SystemHost, vector: number, size: 8 | 16, kind: EventKind, ext: number): number {
  const s = h.s;
  const idtCode = vector * 8 + 2 + ext;
  if (vector * size + size - 1 > s.idtrLimit) throw gp(idtCode);
  const base = s.idtrBase + vector * size;
  gateLo = h.readLin32(base, true) | 0;
  gateHi = h.readLin32(base + 4, true) | 0;
  gateHi2 = size === 16 ? h.readLin32(base + 8, true) >>> 0 : 0;
  const type = (gateHi >>> 8) & 0x1f; // S bit included: must be 0 for gates
  const ok = size === 16 ? type === 0xe || type === 0xf : type === 0x6 || type === 0x7 || type === 0xe || type === 0xf;
  if (!ok) throw gp(idtCode);
  if (kind === EventKind.Software && ((gateHi >>> 13) & 3) < s.cpl) throw gp(vector * 8 + 2);
  if (!(gateHi & 0x8000)) throw new CpuFault(Vec.NP, idtCode);
  return type;
}

/** Check the gate's target code segment (left in `desc`); returns the new CPL. */
function checkGateTarget(h: SystemHost, sel: number, ext: number, long: boolean): number {
  const s = h.s;
  const idx = sel & 0xfffc;
  if (idx === 0) throw gp(ext);
  if (!fetchDescriptor(h, sel, false)) throw gp(idx + ext);
  const attr = descAttr(desc.hi);
  if ((attr & (ATTR_S | ATTR_CODE)) !== (ATTR_S | ATTR_CODE)) throw gp(idx + ext);
  const dpl = attrDpl(attr);
  if (dpl > s.cpl) throw gp(idx + ext);
  if (long && (!(attr & ATTR_L) || attr & ATTR_DB)) throw gp(idx + ext);
  if (!(attr & ATTR_P)) throw new CpuFault(Vec.NP, idx + ext);
  return attr & ATTR_EC ? s.cpl : dpl;
}

function tssFault(s: CpuState, ext: number): CpuFault {
  return new CpuFault(Vec.TS, (s.trSel & 0xfffc) + ext);
}

function deliverLong(h: SystemHost, vector: number, errorCode: number, kind: EventKind, returnRip: number, ext: number): void {
  const s = h.s;
  const type = readGate(h, vector, 16, kind, ext);
  const sel = gateLo >>> 16;
  const target = (gateHi2 | 0) * 4294967296 + (((gateLo & 0xffff) | (gateHi & 0xffff0000)) >>> 0);
  const ist = gateHi & 7;
  const newCpl = checkGateTarget(h, sel, ext, true);
  if (!isCanonical(target)) throw gp(ext);
  const csLo = desc.lo;
  const csHi = desc.hi;
  const csAddr = desc.addr;
  const cpl = s.cpl;
  const oldRsp = getGpr64(s.gpr, Reg.RSP);
  let rsp: number;
  if (ist !== 0 || newCpl < cpl) {
    const off = ist !== 0 ? 0x24 + (ist - 1) * 8 : 4 + newCpl * 8;
    if (off + 7 > s.trLimit) throw tssFault(s, ext);
    rsp = readSized(h, s.trBase + off, 8, true);
    if (!isCanonical(rsp)) throw new CpuFault(Vec.SS, ext);
  } else {
    rsp = oldRsp;
  }
  rsp -= rsp & 0xf;
  // the frame is supervisor data: implicit (SMAP ignores AC) when pushed on leaving CPL 3, else explicit
  const sup = newCpl < 3 && cpl === 3;
  writeSized(h, rsp - 8, 8, s.segSel[SReg.SS]!, sup);
  writeSized(h, rsp - 16, 8, oldRsp, sup);
  writeSized(h, rsp - 24, 8, h.getRflags(), sup);
  writeSized(h, rsp - 32, 8, s.segSel[SReg.CS]!, sup);
  writeSized(h, rsp - 40, 8, returnRip, sup);
  rsp -= 40;
  if (errorCode >= 0) {
    rsp -= 8;
    writeSized(h, rsp, 8, errorCode, sup);
  }
  if (!(csHi & 0x100)) h.writeLin32(csAddr + 4, (csHi | 0x100) >>> 0, true);
  // Commit.
  if (newCpl !== cpl) loadNullSs(s, newCpl);
  loadCache(s, SReg.CS, (sel & 0xfffc) | newCpl, csLo, csHi | 0x100);
  s.cpl = newCpl;
  setGpr64(s.gpr, Reg.RSP, rsp);
  s.rip = target;
  h.setRflags(0, Flag.TF | Flag.NT | Flag.RF | Flag.VM | (type === 0xe ? Flag.IF : 0));
  h.modeChanged();
}

function deliverProtected(h: SystemHost, vector: number, errorCode: number, kind: EventKind, returnRip: number, ext: number): void {
  const s = h.s;
  const v86 = s.mode === Mode.V86;
  const flags = h.getRflags();
  if (v86 && kind === EventKind.Software && ((flags >>> 12) & 3) < 3) throw gp(0);
  const type = readGate(h, vector, 8, kind, ext);
  const size = type & 8 ? 4 : 2;
  const sel = gateLo >>> 16;
  let target = ((gateLo & 0xffff) | (gateHi & 0xffff0000)) >>> 0;
  if (size === 2) target &= 0xffff;
  const newCpl = checkGateTarget(h, sel, ext, false);
  const csLo = desc.lo;
  const csHi = desc.hi;
  const csAddr = desc.addr;
  if (target > descLimit(csLo, csHi)) throw gp(ext);
  const cpl = s.cpl;
  if (v86 && newCpl !== 0) throw gp((sel & 0xfffc) + ext);

  let ssSel = s.segSel[SReg.SS]!;
  let ssBase: number;
  let ssMask: number;
  let sp: number;
  let ssLo = 0;
  let ssHi = 0;
  const switchStack = newCpl < cpl;
  if (switchStack) {
    const tss32 = (s.trAttr & 8) !== 0;
    const off = tss32 ? 4 + newCpl * 8 : 2 + newCpl * 4;
    if (off + (tss32 ? 5 : 3) > s.trLimit) throw tssFault(s, ext);
    sp = tss32 ? h.readLin32(s.trBase + off, true) >>> 0 : h.readLin16(s.trBase + off, true);
    ssSel = h.readLin16(s.trBase + off + (tss32 ? 4 : 2), true);
    const ssIdx = ssSel & 0xfffc;
    if (ssIdx === 0) throw new CpuFault(Vec.TS, ext);
    if ((ssSel & 3) !== newCpl || !fetchDescriptor(h, ssSel, false)) throw new CpuFault(Vec.TS, ssIdx + ext);
    const attr = descAttr(desc.hi);
    if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) !== (ATTR_S | ATTR_RW) || attrDpl(attr) !== newCpl) {
      throw new CpuFault(Vec.TS, ssIdx + ext);
    }
    if (!(attr & ATTR_P)) throw new CpuFault(Vec.SS, ssIdx + ext);
    ssLo = desc.lo;
    ssHi = desc.hi | 0x100;
    ssBase = descBase(ssLo, ssHi);
    ssMask = attr & ATTR_DB ? 0xffffffff : 0xffff;
  } else {
    ssBase = s.segBase[SReg.SS]!;
    ssMask = stackWidth(s) === 4 ? 0xffffffff : 0xffff;
    sp = getSp(s);
  }
  // the frame is supervisor data: implicit (SMAP ignores AC) when pushed on leaving CPL 3, else explicit
  const sup = newCpl < 3 && cpl === 3;
  const push = (v: number): void => {
    sp = (sp - size) >>> 0;
    writeSized(h, ssBase + (sp & ssMask), size, v, sup);
  };
  if (switchStack) {
    if (v86) {
      push(s.segSel[SReg.GS]!);
      push(s.segSel[SReg.FS]!);
      push(s.segSel[SReg.DS]!);
      push(s.segSel[SReg.ES]!);
    }
    push(s.segSel[SReg.SS]!);
    push(s.gpr[2 * Reg.RSP]! >>> 0);
  }
  push(flags);
  push(s.segSel[SReg.CS]!);
  push(returnRip);
  if (errorCode >= 0) push(errorCode);
  if (!(csHi & 0x100)) h.writeLin32(csAddr + 4, (csHi | 0x100) >>> 0, true);
  // Commit.
  if (switchStack) {
    loadCache(s, SReg.SS, ssSel, ssLo, ssHi);
    if (v86) {
      for (const r of DATA_SREGS) {
        s.segSel[r] = 0;
        s.segBase[r] = 0;
        s.segLimit[r] = 0;
        s.segAttr[r] = 0;
      }
    }
  }
  if (ssMask === 0xffff) s.gpr[2 * Reg.RSP] = (s.gpr[2 * Reg.RSP]! & ~0xffff) | (sp & 0xffff);
  else s.gpr[2 * Reg.RSP] = sp | 0;
  loadCache(s, SReg.CS, (sel & 0xfffc) | newCpl, csLo, csHi | 0x100);
  s.cpl = newCpl;
  s.rip = target;
  h.setRflags(0, Flag.TF | Flag.NT | Flag.RF | Flag.VM | (type & 1 ? 0 : Flag.IF));
  h.modeChanged();
}

// ---- IRET -----------------------------------------------------------------------------------

const ARITH_AND_CONTROL = Flag.CF | Flag.PF | Flag.AF | Flag.ZF | Flag.SF | Flag.TF | Flag.DF | Flag.OF | Flag.NT;

/** IRET / IRETD / IRETQ. */
export function iret(h: SystemHost, opsize: 2 | 4 | 8): void {
  const s = h.s;
  if (s.mode === Mode.Real || s.mode === Mode.V86) {
    iretRealLike(h, opsize);
    return;
  }
  const flags = h.getRflags();
  if (flags & Flag.NT) throw gp(0); // task return (not implemented; #GP in long mode anyway)
  const sp = getSp(s);
  const rawRip = readSized(h, stackLin(s, sp), opsize, false);
  const csSel = readSized(h, stackLin(s, sp + opsize), opsize, false) & 0xffff;
  const newFlags = readSized(h, stackLin(s, sp + 2 * opsize), opsize, false) >>> 0;
  const lma = (s.efer & Efer.LMA) !== 0;
  const cpl = s.cpl;
  if (!lma && opsize === 4 && newFlags & Flag.VM && cpl === 0) {
    iretToV86(h, sp, rawRip, csSel, newFlags);
    return;
  }
  const idx = csSel & 0xfffc;
  const rpl = csSel & 3;
  if (idx === 0) throw gp(0);
  if (rpl < cpl) throw gp(idx);
  if (!fetchDescriptor(h, csSel, false)) throw gp(idx);
  checkReturnCs(s, idx, rpl);
  const csLo = desc.lo;
  const csHi = desc.hi;
  const csAddr = desc.addr;
  const csAttr = descAttr(csHi);
  const target64 = lma && (csAttr & ATTR_L) !== 0;
  let rip: number;
  if (target64) {
    rip = rawRip;
    if (!isCanonical(rip)) throw gp(0);
  } else {
    rip = opsize === 2 ? rawRip & 0xffff : rawRip >>> 0;
    if (rip > descLimit(csLo, csHi)) throw gp(0);
  }
  let mask = ARITH_AND_CONTROL;
  if (opsize !== 2) mask |= Flag.RF | Flag.AC | Flag.ID;
  if (cpl <= ((flags >>> 12) & 3)) mask |= Flag.IF;
  if (cpl === 0) mask |= Flag.IOPL | (opsize !== 2 ? Flag.VIF | Flag.VIP : 0);

  if (s.mode === Mode.Long64 || rpl > cpl) {
    const newSp = readSized(h, stackLin(s, sp + 3 * opsize), opsize, false);
    const ssSel = readSized(h, stackLin(s, sp + 4 * opsize), opsize, false) & 0xffff;
    const ssUsable = checkReturnSs(h, ssSel, rpl, target64);
    if (ssUsable && !(desc.hi & 0x100)) h.writeLin32(desc.addr + 4, (desc.hi | 0x100) >>> 0, true);
    if (!(csHi & 0x100)) h.writeLin32(csAddr + 4, (csHi | 0x100) >>> 0, true);
    // Commit.
    if (ssUsable) loadCache(s, SReg.SS, ssSel, desc.lo, desc.hi | 0x100);
    else loadNullSs(s, ssSel, rpl);
    loadCache(s, SReg.CS, csSel, csLo, csHi | 0x100);
    s.cpl = rpl;
    if (lma) setGpr64(s.gpr, Reg.RSP, opsize === 8 ? newSp : newSp >>> 0);
    else if (s.segAttr[SReg.SS]! & ATTR_DB) s.gpr[2 * Reg.RSP] = newSp | 0;
    else s.gpr[2 * Reg.RSP] = (s.gpr[2 * Reg.RSP]! & ~0xffff) | (newSp & 0xffff);
    if (rpl > cpl) nullInaccessibleSegments(s);
  } else {
    if (!(csHi & 0x100)) h.writeLin32(csAddr + 4, (csHi | 0x100) >>> 0, true);
    loadCache(s, SReg.CS, csSel, csLo, csHi | 0x100);
    setSp(s, sp + 3 * opsize);
  }
  s.rip = rip;
  h.setRflags(newFlags, mask);
  h.modeChanged();
  nmiBlockedSet.delete(s);
}

function iretRealLike(h: SystemHost, opsize: 2 | 4 | 8): void {
  const s = h.s;
  const flags = h.getRflags();
  const v86 = s.mode === Mode.V86;
  if (v86 && ((flags >>> 12) & 3) < 3) throw gp(0);
  const size = opsize === 2 ? 2 : 4;
  const sp = getSp(s);
  const rawRip = readSized(h, stackLin(s, sp), size, false);
  const cs = readSized(h, stackLin(s, sp + size), size, false) & 0xffff;
  const newFlags = readSized(h, stackLin(s, sp + 2 * size), size, false);
  if (size === 4 && rawRip > 0xffff) throw gp(0); // beyond the real-mode CS limit
  // Real mode may change everything but VM/VIF/VIP; V86 additionally keeps IOPL.
  let mask = ARITH_AND_CONTROL | Flag.IF | Flag.IOPL;
  if (size === 4) mask |= Flag.RF | Flag.AC | Flag.ID;
  if (v86) mask &= ~Flag.IOPL;
  if (size === 2) mask &= 0xffff;
  setSp(s, sp + 3 * size);
  loadRealSegment(s, SReg.CS, cs);
  s.rip = rawRip & 0xffff;
  h.setRflags(newFlags, mask);
  h.modeChanged();
  nmiBlockedSet.delete(s);
}

/** IRETD from CPL 0 protected mode with EFLAGS.VM set in the popped image. */
function iretToV86(h: SystemHost, sp: number, rawRip: number, cs: number, newFlags: number): void {
  const s = h.s;
  const at = (k: number): number => readSized(h, stackLin(s, sp + k * 4), 4, false);
  const esp = at(3);
  const ss = at(4) & 0xffff;
  const es = at(5) & 0xffff;
  const ds = at(6) & 0xffff;
  const fs = at(7) & 0xffff;
  const gs = at(8) & 0xffff;
  h.setRflags(newFlags, 0x3f7fd5 | Flag.VM);
  s.cpl = 3;
  h.modeChanged(); // now V86: segment loads below use V86 attributes
  for (const [r, v] of [[SReg.CS, cs], [SReg.SS, ss], [SReg.ES, es], [SReg.DS, ds], [SReg.FS, fs], [SReg.GS, gs]] as const) {
    loadRealSegment(s, r, v);
  }
  s.gpr[2 * Reg.RSP] = esp | 0;
  s.rip = rawRip & 0xffff;
  h.modeChanged();
  nmiBlockedSet.delete(s);
}
