/**
 * CRC32 (SSE4.2, F2 0F 38 F0 / F1): accumulates the CRC-32C (Castagnoli polynomial 0x1EDC6F41,
 * bit-reflected 0x82F63B78, no final inversion) of the r/m operand's bytes, least significant
 * first, into the low 32 bits of the destination; a 64-bit destination (REX.W) has its upper
 * half cleared. Flags are unchanged. A general-register instruction, so it lives in the core
 * (byte registers with and without REX, operand sizes), not in the SIMD unit.
 */
import type { Cpu } from '../cpu.js';
import { features } from '../../features.js';
import { fault, getReg, modrm, readRM, setReg } from './operands.js';

const UD = 6;

/** CRC-32C of one byte, per byte value (reflected, table-driven). */
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crcBytes(crc: number, v: number, n: number): number {
  for (let k = 0; k < n; k++) {
    crc = CRC_TABLE[(crc ^ v) & 0xff]! ^ (crc >>> 8);
    v >>>= 8;
  }
  return crc;
}

/** F2 0F 38 F0 (r, r/m8) and F1 (r, r/m16/32/64), after the opcode bytes. */
export function crc32(c: Cpu, op: number): void {
  if (!features.sse42) fault(UD);
  const sz = op === 0xf0 ? 1 : c.opsize;
  modrm(c, 0);
  const v = readRM(c, sz);
  const vh = c.hi;
  let crc = getReg(c, c.reg, 4);
  if (sz === 8) {
    crc = crcBytes(crc, v, 4);
    crc = crcBytes(crc, vh, 4);
  } else crc = crcBytes(crc, v, sz);
  setReg(c, c.reg, c.rexW ? 8 : 4, crc >>> 0, 0);
}
