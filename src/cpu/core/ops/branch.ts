/**
 * Control transfer: near jumps with the canonical check, the operand size of relative
 * branches, and group 5 (FF: INC/DEC, CALL/JMP near and far indirect, PUSH r/m).
 */
import type { Cpu } from '../cpu.js';
import { farJump, farCall } from '../../system/segments.js';
import { fault, getReg, setReg, modrm, eaLin, readMem, writeMem, readRM, segAdd } from './operands.js';
import { incdec } from './alu.js';
import { push, stackOpSize } from './stack.js';

const TWO32 = 4294967296;
const TWO47 = 140737488355328;
const UD = 6;
const GP = 13;

// ==== control transfer ======================================================================

/** Near branch to `target` (an offset computed as a number) with operand size. */
export function jumpTo(c: Cpu, target: number, size: number): void {
  if (c.long && size === 8) {
    if (target < -TWO47 || target >= TWO47) fault(GP, 0);
    c.ip = target;
  } else if (size === 2) c.ip = target & 0xffff;
  else if (c.long) c.ip = target >>> 0;
  else c.ip = target >>> 0;
}

/** Operand size of near relative branches: 64-bit in long mode (the 66 prefix is ignored, as on Intel). */
export function branchSize(c: Cpu): number {
  return c.long ? 8 : c.opsize;
}

// ==== group 5 ===============================================================================

export function group5(c: Cpu): void {
  const s = c.s;
  modrm(c, 0);
  const op = c.reg & 7;
  switch (op) {
    case 0:
    case 1: {
      const sz = c.opsize;
      if (c.mod === 3) setReg(c, c.rm, sz, incdec(c, sz, getReg(c, c.rm, sz), c.hi, op === 1), c.hi);
      else {
        const lin = eaLin(c);
        c.probeWrite(lin, sz); // a faulting store leaves the flags as they were
        const v = readMem(c, lin, sz);
        const r = incdec(c, sz, v, c.hi, op === 1);
        writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 2: { // CALL near indirect
      const sz = stackOpSize(c);
      const lo = readRM(c, sz);
      const target = sz === 8 ? (c.hi | 0) * TWO32 + lo : lo;
      const ret = c.ip;
      if (sz === 8 && (target < -TWO47 || target >= TWO47)) fault(GP, 0);
      if (sz === 8) push(c, 8, ret >>> 0, Math.floor(ret / TWO32));
      else push(c, sz, ret, 0);
      jumpTo(c, target, sz);
      return;
    }
    case 4: { // JMP near indirect
      const sz = stackOpSize(c);
      const lo = readRM(c, sz);
      const target = sz === 8 ? (c.hi | 0) * TWO32 + lo : lo;
      jumpTo(c, target, sz);
      return;
    }
    case 3:
    case 5: { // CALLF / JMPF m16:16/32/64
      if (c.mod === 3) fault(UD);
      const lin = eaLin(c);
      const osz = c.opsize;
      let off: number;
      if (osz === 8) {
        const lo = c.read64(lin);
        off = (c.hi | 0) * TWO32 + lo;
      } else off = osz === 4 ? c.read32(lin) : c.read16(lin);
      const sel = c.read16(segAdd(c, lin, osz));
      s.rip = c.ip;
      if (op === 3) farCall(c, sel, off, osz as 2 | 4 | 8, c.ip);
      else farJump(c, sel, off, osz as 2 | 4 | 8);
      c.ip = s.rip;
      return;
    }
    case 6: {
      const sz = stackOpSize(c);
      const v = readRM(c, sz);
      push(c, sz, v, c.hi);
      return;
    }
    default:
      fault(UD);
  }
}
