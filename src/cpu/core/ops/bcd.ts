/**
 * BCD adjustments (legacy modes only; #UD in 64-bit mode, checked by the caller): DAA, DAS,
 * AAA, AAS, AAM, AAD.
 */
import type { Cpu } from '../cpu.js';
import { fault } from './operands.js';
import { szp } from './alu.js';



// ---- BCD (legacy modes only) ----
export function bcd(c: Cpu, op: number): void {
  const g = c.s.gpr;
  let al = g[0]! & 0xff;
  let ah = (g[0]! >> 8) & 0xff;
  const f = c.getArith();
  let cf = f & 1;
  let af = (f >> 4) & 1;
  switch (op) {
    case 0x27: { // DAA
      const oldAl = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        al = (al + 6) & 0xff;
        cf = oldCf | (oldAl + 6 > 0xff ? 1 : 0);
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al + 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x2f: { // DAS
      const oldAl = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        cf = oldCf | (al < 6 ? 1 : 0);
        al = (al - 6) & 0xff;
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al - 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x37: // AAA
      if ((al & 0xf) > 9 || af) {
        al = (al + 6) & 0xff;
        ah = (ah + 1) & 0xff;
        af = cf = 1;
      } else af = cf = 0;
      al &= 0xf;
      break;
    default: // AAS
      if ((al & 0xf) > 9 || af) {
        al = (al - 6) & 0xff;
        ah = (ah - 1) & 0xff;
        af = cf = 1;
      } else af = cf = 0;
      al &= 0xf;
      break;
  }
  g[0] = (g[0]! & ~0xffff) | (ah << 8) | al;
  c.setArith((szp(1, al, 0) & ~0) | cf | (af << 4) | (f & 0x800));
}

/** AAM imm8: AH = AL / imm8, AL = AL % imm8 (#DE on 0). */
export function aam(c: Cpu): void {
  const g = c.s.gpr;
  const base = c.fetch8();
  if (base === 0) fault(0);
  const al = g[0]! & 0xff;
  const r = al % base;
  g[0] = (g[0]! & ~0xffff) | (Math.floor(al / base) << 8) | r;
  c.setArith(szp(1, r, 0));
}

/** AAD imm8: AL = AL + AH * imm8, AH = 0. */
export function aad(c: Cpu): void {
  const g = c.s.gpr;
  const base = c.fetch8();
  const r = ((g[0]! & 0xff) + ((g[0]! >> 8) & 0xff) * base) & 0xff;
  g[0] = (g[0]! & ~0xffff) | r;
  c.setArith(szp(1, r, 0));
}
