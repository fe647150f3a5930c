/**
 * A state dump of the bt engine's vCPU, for a user (or a developer) looking at a guest that
 * hangs or spins: `kill -USR2 <pid>` prints it to stderr (wired in src/vmm/run.ts), the way
 * QEMU's monitor answers `info registers`. Reads guest memory through a page walk of its own
 * and never faults: an unmapped stack or code page is printed as such.
 */
import type { Cpu } from '../../cpu/core/cpu.js';
import { Access, type WalkResult } from '../../cpu/system-api.js';
import { walk } from '../../cpu/system/paging.js';

const GPR_NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const hex = (v: number | bigint, width = 16): string => v.toString(16).padStart(width, '0');

function gpr(cpu: Cpu, r: number): bigint {
  const g = cpu.s.gpr;
  return (BigInt(g[2 * r + 1]! >>> 0) << 32n) | BigInt(g[2 * r]! >>> 0);
}

/** `len` bytes at linear `lin` (not crossing a page), or undefined when unmapped or not RAM. */
function peek(cpu: Cpu, lin: number, len: number): Uint8Array | undefined {
  const out: WalkResult = { phys: 0, writable: false, user: false, nx: false, global: false };
  // as the vCPU would read it at its CPL (under SMAP a supervisor read of a user page faults)
  if (walk(cpu.s, cpu.memory, lin, cpu.s.cpl === 3 ? Access.Read | Access.User : Access.Read, out) !== -1) return undefined;
  const phys = out.phys + (lin & 0xfff);
  if (!cpu.memory.isRam(phys, len)) return undefined;
  const b = new Uint8Array(len);
  cpu.memory.readInto(phys, b);
  return b;
}

/** The vCPU: registers, the code at RIP, the top of the stack, counters. */
export function describeCpu(cpu: Cpu): string[] {
  const s = cpu.s;
  const lines = [
    `rip ${hex(BigInt.asUintN(64, BigInt(s.rip)))} cpl ${s.cpl} mode ${s.mode} rflags ${hex(cpu.getRflags(), 8)} ${s.halted ? 'HALTED ' : ''}${s.interruptShadow ? 'shadow ' : ''}`
      + `cr0 ${hex(s.cr0, 8)} cr3 ${hex(BigInt.asUintN(64, BigInt(s.cr3)))} cr4 ${hex(s.cr4, 8)} retired ${cpu.retired}`,
  ];
  for (let r = 0; r < 16; r += 4) lines.push([0, 1, 2, 3].map((i) => `${GPR_NAMES[r + i]!.padStart(3)} ${hex(gpr(cpu, r + i))}`).join(' '));
  const code = peek(cpu, s.rip, Math.min(16, 4096 - (s.rip & 0xfff)));
  lines.push(`code at rip: ${code ? Array.from(code, (b) => hex(b, 2)).join(' ') : 'not mapped'}`);
  const rsp = Number(BigInt.asIntN(64, gpr(cpu, 4)));
  const stack: string[] = [];
  for (let i = 0; i < 16; i++) {
    const b = peek(cpu, rsp + 8 * i, 8);
    if (!b || ((rsp + 8 * i) & 0xfff) > 0xff8) break;
    stack.push(hex(new DataView(b.buffer).getBigUint64(0, true)));
  }
  lines.push(`stack: ${stack.join(' ') || 'not mapped'}`);
  const c = cpu.cache;
  lines.push(`counters: interpreted ${cpu.stepsRun}, faults ${cpu.faultsTaken}` + (c ? `, blocks run ${c.run}, compiled ${c.compiled}, code flushes ${c.flushes}, smc refused ${c.smcRefused}` : ', translator off'));
  return lines;
}
