/**
 * Stack access: push, pop, peek and RSP adjustment at the stack size (16/32/64-bit SS), and
 * the operand size of stack operations.
 */
import type { Cpu } from '../cpu.js';
import { fault, readMem, writeMem } from './operands.js';

const TWO32 = 4294967296;
const TWO47 = 140737488355328;

// ==== stack =================================================================================

export function push(c: Cpu, size: number, v: number, hi: number): void {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) - size;
    if (sp < -TWO47 || sp >= TWO47) fault(12, 0);
    writeMem(c, sp, size, v, hi);
    g[8] = sp;
    g[9] = Math.floor(sp / TWO32);
  } else if (c.stackSize === 4) {
    const sp = (g[8]! - size) >>> 0;
    writeMem(c, (c.s.segBase[2]! + sp) >>> 0, size, v, hi);
    g[8] = sp;
  } else {
    const sp = (g[8]! - size) & 0xffff;
    writeMem(c, (c.s.segBase[2]! + sp) >>> 0, size, v, hi);
    g[8] = (g[8]! & ~0xffff) | sp;
  }
}

/** Read the value at the top of the stack (+offset) without popping. */
export function stackPeek(c: Cpu, size: number, offset: number): number {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) + offset;
    if (sp < -TWO47 || sp >= TWO47) fault(12, 0);
    return readMem(c, sp, size);
  }
  const sp = c.stackSize === 4 ? (g[8]! + offset) >>> 0 : (g[8]! + offset) & 0xffff;
  return readMem(c, (c.s.segBase[2]! + sp) >>> 0, size);
}

export function addSp(c: Cpu, n: number): void {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) + n;
    g[8] = sp;
    g[9] = Math.floor(sp / TWO32);
  } else if (c.stackSize === 4) g[8] = (g[8]! + n) >>> 0;
  else g[8] = (g[8]! & ~0xffff) | ((g[8]! + n) & 0xffff);
}

export function pop(c: Cpu, size: number): number {
  const v = stackPeek(c, size, 0);
  const h = c.hi;
  addSp(c, size);
  c.hi = h;
  return v;
}

/** Operand size for near branches/stack ops that default to 64-bit in long mode. */
export function stackOpSize(c: Cpu): number {
  if (c.long) return c.opOverride && !c.rexW ? 2 : 8; // REX.W wins over 66
  return c.opsize;
}
