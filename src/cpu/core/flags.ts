/**
 * The lazy arithmetic flags (OSZAPC): the last flag-writing instruction leaves its kind, size,
 * operands and result, and a flag is computed only when something reads it — most writers are
 * overwritten unread. The Cpu extends this class, so the interpreter reads `c.cf()` or
 * `c.cond(cc)` as before; translated blocks keep the same record in the wasm arena (the host
 * copies it back into these fields: wasm/backend.ts syncFlags).
 *
 * Conventions: 64-bit operands are (lo, hi) 32-bit halves — fA/fAHi, fB/fBHi, fRes/fResHi.
 */
import { F64_ZERO } from '../state.js';
import { F_EAGER, F_ADD, F_SUB, F_LOGIC, F_INC, ARITH_MASK, PARITY } from './consts.js';

export class LazyFlags {
  /** The writer: F_EAGER (the flags are in fFlags), F_ADD, F_SUB, F_LOGIC, F_INC, F_DEC... */
  fOp = F_EAGER;
  fSz = 4;
  fRes = F64_ZERO;
  fResHi = F64_ZERO;
  fA = F64_ZERO;
  fAHi = F64_ZERO;
  fB = F64_ZERO;
  fBHi = F64_ZERO;
  fCin = 0;
  fFlags = 0;

  /** Replace the arithmetic flags with explicit values (OSZAPC bits). */
  setArith(flags: number): void {
    this.fOp = F_EAGER;
    this.fFlags = flags & ARITH_MASK;
  }

  getArith(): number {
    if (this.fOp === F_EAGER) return this.fFlags;
    return this.cf() | (this.pf() << 2) | (this.af() << 4) | (this.zf() << 6) | (this.sf() << 7) | (this.of() << 11);
  }

  cf(): number {
    switch (this.fOp) {
      case F_EAGER:
        return this.fFlags & 1;
      case F_ADD:
        if (this.fSz === 8) {
          const rh = this.fResHi >>> 0;
          const ah = this.fAHi >>> 0;
          if (rh !== ah) return rh < ah ? 1 : 0;
          return (this.fCin ? this.fRes <= this.fA : this.fRes < this.fA) ? 1 : 0;
        }
        return (this.fCin ? this.fRes <= this.fA : this.fRes < this.fA) ? 1 : 0;
      case F_SUB:
        if (this.fSz === 8) {
          const ah = this.fAHi >>> 0;
          const bh = this.fBHi >>> 0;
          if (ah !== bh) return ah < bh ? 1 : 0;
        }
        return (this.fCin ? this.fA <= this.fB : this.fA < this.fB) ? 1 : 0;
      case F_LOGIC:
        return 0;
      default:
        return this.fCin;
    }
  }

  zf(): number {
    if (this.fOp === F_EAGER) return (this.fFlags >> 6) & 1;
    return (this.fRes | (this.fSz === 8 ? this.fResHi : 0)) === 0 ? 1 : 0;
  }

  sf(): number {
    if (this.fOp === F_EAGER) return (this.fFlags >> 7) & 1;
    if (this.fSz === 8) return this.fResHi >>> 31;
    return (this.fRes >>> (this.fSz * 8 - 1)) & 1;
  }

  pf(): number {
    if (this.fOp === F_EAGER) return (this.fFlags >> 2) & 1;
    return PARITY[this.fRes & 0xff]!;
  }

  af(): number {
    if (this.fOp === F_EAGER) return (this.fFlags >> 4) & 1;
    if (this.fOp === F_LOGIC) return 0;
    return ((this.fA ^ this.fB ^ this.fRes) >> 4) & 1;
  }

  of(): number {
    let x: number;
    switch (this.fOp) {
      case F_EAGER:
        return (this.fFlags >> 11) & 1;
      case F_LOGIC:
        return 0;
      case F_ADD:
      case F_INC:
        x = this.fSz === 8
          ? (this.fAHi ^ this.fResHi) & (this.fBHi ^ this.fResHi)
          : (this.fA ^ this.fRes) & (this.fB ^ this.fRes);
        break;
      default:
        x = this.fSz === 8
          ? (this.fAHi ^ this.fBHi) & (this.fAHi ^ this.fResHi)
          : (this.fA ^ this.fB) & (this.fA ^ this.fRes);
    }
    if (this.fSz === 8) return x >>> 31;
    return (x >>> (this.fSz * 8 - 1)) & 1;
  }

  /** Evaluate condition code cc (0..15, the low nibble of Jcc/SETcc/CMOVcc). */
  cond(cc: number): boolean {
    let r: number;
    switch (cc >> 1) {
      case 0: r = this.of(); break;
      case 1: r = this.cf(); break;
      case 2: r = this.zf(); break;
      case 3: r = this.cf() | this.zf(); break;
      case 4: r = this.sf(); break;
      case 5: r = this.pf(); break;
      case 6: r = this.sf() ^ this.of(); break;
      default: r = this.zf() | (this.sf() ^ this.of()); break;
    }
    return (r !== 0) !== ((cc & 1) !== 0);
  }
}
