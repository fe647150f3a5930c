/**
 * Directed tests of exceptions and system behaviour, emulator only (the host would kill the
 * process): #DE, #UD, #GP on non-canonical addresses, #PF with CR2 and error codes, ring-3
 * privilege checks, INT3 → handler → IRETQ, and a 32-bit protected mode → long mode switch.
 * Expected values come from the Intel SDM vol. 3 (chapter 6, exception and interrupt reference;
 * chapter 4.7, page-fault error code; chapter 9.8.5, initializing IA-32e mode).
 */
import { describe, expect, it } from 'vitest';
import { features } from '../../src/cpu/features.js';
import { assemble, nasmMissing } from './assemble.js';
import {
  CODE_BASE, EmulatedRunner, type EmuResult, PT_BASE, PTE_P, PTE_U, PTE_W, SEL_USER_CODE64, SEL_USER_DATA, setIdtGate, TSS_BASE,
  TSS_RSP0,
} from './emulated.js';
import { blankState, type OracleState } from './state.js';

const DE = 0;
const BP = 3;
const UD = 6;
const GP = 13;
const PF = 14;

/** Page-fault error code bits (SDM 4.7). */
const PFE_P = 1;
const PFE_W = 2;
const PFE_U = 4;

const USER_STACK = 0x1e000;

function state(regs: Record<number, bigint> = {}): OracleState {
  const s = blankState();
  for (const [r, v] of Object.entries(regs)) s.gpr[Number(r)] = v;
  return s;
}

/** Code that drops to ring 3 (CPL 3, user data segment, USER_STACK) and continues with `user`. */
function toRing3(user: string): string {
  return [
    `push ${SEL_USER_DATA}`,
    `push ${USER_STACK}`,
    'push 0x2',
    `push ${SEL_USER_CODE64}`,
    'lea rax, [rel .user]',
    'push rax',
    'iretq',
    '.user:',
    user,
  ].join('\n');
}

function expectException(r: EmuResult, vector: number, errorCode: number, rip: number): void {
  expect(r.error, r.error).toBeUndefined();
  expect(r.shutdown).toBeUndefined();
  expect(r.exception, 'expected an exception').toBeDefined();
  expect({ vector: r.exception!.vector, errorCode: r.exception!.errorCode, rip: r.exception!.rip }).toEqual({ vector, errorCode, rip });
}

/** Address of the last instruction of `code` when that instruction is `last`. */
function lastInsn(code: Uint8Array, last: string): number {
  return CODE_BASE + code.length - assemble(last).length;
}

/** Set the 4 KiB PTE of `page` (< 2 MiB) in the test page tables. */
function setPte(runner: EmulatedRunner, page: number, flags: number): void {
  runner.memory.write64(PT_BASE + 8 * (page >>> 12), BigInt(page + flags));
}

describe.skipIf(nasmMissing)('emulator: exceptions and system behaviour', () => {
  const emu = new EmulatedRunner();

  describe('#DE', () => {
    const cases: [string, string, Record<number, bigint>][] = [
      ['div by zero (32-bit)', 'div ecx', { 0: 5n, 2: 0n, 1: 0n }],
      ['div by zero (8-bit)', 'div cl', { 0: 5n, 1: 0x100n }],
      ['div quotient overflow (64-bit)', 'div rcx', { 0: 0n, 2: 1n, 1: 1n }],
      ['div quotient overflow (8-bit)', 'div cl', { 0: 0x100n, 1: 1n }],
      ['idiv -2^63 / -1', 'idiv rcx', { 0: 0x8000_0000_0000_0000n, 2: 0xffff_ffff_ffff_ffffn, 1: 0xffff_ffff_ffff_ffffn }],
      ['idiv -128 / -1 (8-bit)', 'idiv cl', { 0: 0xff80n, 1: 0xffn }],
      ['idiv by zero from memory', 'idiv dword [rbx]', { 3: 0n }],
    ];
    for (const [name, insn, regs] of cases) {
      it(name, () => {
        const code = assemble(insn);
        const r = emu.run(code, state(regs), { ptrRegs: [3] });
        expectException(r, DE, -1, CODE_BASE);
      });
    }
    it('leaves the destination registers unchanged', () => {
      const code = assemble('div ecx');
      const r = emu.run(code, state({ 0: 0x1111n, 2: 0x2222n, 1: 0n }));
      expect(r.gpr[0]).toBe(0x1111n);
      expect(r.gpr[2]).toBe(0x2222n);
    });
  });

  describe('#UD', () => {
    it('UD2', () => {
      const code = assemble('nop\nud2');
      expectException(emu.run(code, state()), UD, -1, CODE_BASE + 1);
    });
    it('LOCK on a register destination', () => {
      const code = assemble('db 0xf0, 0x01, 0xd8'); // lock add eax, ebx
      expectException(emu.run(code, state()), UD, -1, CODE_BASE);
    });
    it('LOCK on an instruction that cannot be locked (MOV)', () => {
      const code = assemble('db 0xf0\nmov [rbx], eax');
      expectException(emu.run(code, state(), { ptrRegs: [3] }), UD, -1, CODE_BASE);
    });
    it.skipIf(features.cx16)('CMPXCHG16B when CX16 is not advertised', () => {
      const code = assemble('cmpxchg16b [rbx]');
      expectException(emu.run(code, state(), { ptrRegs: [3] }), UD, -1, CODE_BASE);
    });
    it.skipIf(features.popcnt)('POPCNT when not advertised', () => {
      const code = assemble('popcnt eax, ecx');
      expectException(emu.run(code, state()), UD, -1, CODE_BASE);
    });
    it('SWAPGS is fine in 64-bit mode but a 0F 0B anywhere is #UD', () => {
      const code = assemble('swapgs\nswapgs\nud2');
      expectException(emu.run(code, state()), UD, -1, lastInsn(code, 'ud2'));
    });
  });

  describe('#GP on non-canonical addresses', () => {
    for (const [name, insn] of [
      ['load', 'mov rax, [rcx]'],
      ['store', 'mov [rcx], rax'],
      ['read-modify-write', 'add [rcx], eax'],
    ] as const) {
      it(`${name} at 0x0000800000000000`, () => {
        const code = assemble(insn);
        expectException(emu.run(code, state({ 1: 0x0000_8000_0000_0000n })), GP, 0, CODE_BASE);
      });
    }
    it('load at 0xffff7fffffffffff', () => {
      const code = assemble('mov al, [rcx]');
      expectException(emu.run(code, state({ 1: 0xffff_7fff_ffff_ffffn })), GP, 0, CODE_BASE);
    });
    it('jump to a non-canonical target faults on the jump', () => {
      const code = assemble('jmp rcx');
      expectException(emu.run(code, state({ 1: 0x1234_5678_0000_0000n })), GP, 0, CODE_BASE);
    });
  });

  describe('#PF', () => {
    const PAGE = 0x50000;
    it('read of a not-present page: error code 0, CR2 = the address', () => {
      const code = assemble('mov eax, [rcx]');
      const r = emu.run(code, state({ 1: BigInt(PAGE + 0x18) }), { setup: () => setPte(emu, PAGE, 0) });
      expectException(r, PF, 0, CODE_BASE);
      expect(emu.cpu!.s.cr2).toBe(PAGE + 0x18);
    });
    it('write of a not-present page: error code W', () => {
      const code = assemble('mov [rcx], eax');
      const r = emu.run(code, state({ 1: BigInt(PAGE + 0xffc) }), { setup: () => setPte(emu, PAGE, 0) });
      expectException(r, PF, PFE_W, CODE_BASE);
      expect(emu.cpu!.s.cr2).toBe(PAGE + 0xffc);
    });
    it('supervisor write to a read-only page with CR0.WP=1: error code P|W', () => {
      const code = assemble('mov rax, cr0\nbts rax, 16\nmov cr0, rax\nmov [rcx], edx');
      const r = emu.run(code, state({ 1: BigInt(PAGE + 8) }), { setup: () => setPte(emu, PAGE, PTE_P | PTE_U) });
      expectException(r, PF, PFE_P | PFE_W, lastInsn(code, 'mov [rcx], edx'));
      expect(emu.cpu!.s.cr2).toBe(PAGE + 8);
    });
    it('supervisor write to a read-only page with CR0.WP=0 succeeds', () => {
      const code = assemble('mov rax, cr0\nbtr rax, 16\nmov cr0, rax\nmov dword [rcx], 0x5a5a5a5a');
      const r = emu.run(code, state({ 1: BigInt(PAGE + 8) }), { setup: () => setPte(emu, PAGE, PTE_P | PTE_U) });
      expect(r.exception).toBeUndefined();
      expect(r.error).toBeUndefined();
      expect(emu.memory.read32(PAGE + 8)).toBe(0x5a5a5a5a);
    });
    it('user read of a supervisor page: error code P|U', () => {
      const code = assemble(toRing3('mov eax, [rcx]'));
      const r = emu.run(code, state({ 1: BigInt(PAGE) }), { setup: () => setPte(emu, PAGE, PTE_P | PTE_W) });
      expectException(r, PF, PFE_P | PFE_U, lastInsn(code, 'mov eax, [rcx]'));
      expect(r.exception!.cs).toBe(SEL_USER_CODE64);
    });
    it('user write of a read-only user page: error code P|W|U', () => {
      const code = assemble(toRing3('mov [rcx], eax'));
      const r = emu.run(code, state({ 1: BigInt(PAGE) }), { setup: () => setPte(emu, PAGE, PTE_P | PTE_U) });
      expectException(r, PF, PFE_P | PFE_W | PFE_U, lastInsn(code, 'mov [rcx], eax'));
    });
    it('sets the accessed and dirty bits in the PTE on a write', () => {
      const code = assemble('mov [rcx], eax');
      const r = emu.run(code, state({ 1: BigInt(PAGE) }), { setup: () => setPte(emu, PAGE, PTE_P | PTE_W) });
      expect(r.exception).toBeUndefined();
      expect(Number(emu.memory.read64(PT_BASE + 8 * (PAGE >>> 12)) & 0x60n)).toBe(0x60);
    });
    it('instruction fetch from a not-present page: error code I/D when NX is on, else 0', () => {
      const code = assemble('jmp rcx');
      const r = emu.run(code, state({ 1: BigInt(PAGE) }), { setup: () => setPte(emu, PAGE, 0) });
      expect(r.exception?.vector).toBe(PF);
      expect(r.exception!.rip).toBe(PAGE);
      expect(r.exception!.errorCode & ~0x10).toBe(0);
      expect(emu.cpu!.s.cr2).toBe(PAGE);
    });
  });

  describe('ring 3 privilege checks', () => {
    for (const insn of ['cli', 'sti', 'hlt', 'mov cr0, rax', 'mov rax, cr3', 'in al, dx', 'out dx, al', 'lgdt [rbx]', 'wrmsr', 'rdmsr', 'invlpg [rbx]', 'clts']) {
      it(`${insn} in ring 3 → #GP(0) on the ring-0 stack`, () => {
        const code = assemble(toRing3(insn));
        const r = emu.run(code, state({ 2: 0x80n, 3: 0x1000n }));
        expectException(r, GP, 0, lastInsn(code, insn));
        const e = r.exception!;
        expect(e.cs).toBe(SEL_USER_CODE64);
        expect(e.ss).toBe(SEL_USER_DATA);
        expect(e.rsp).toBe(USER_STACK);
        // the frame was pushed on RSP0 from the TSS: 6 qwords (with error code) below it
        const rsp = (emu.cpu!.s.gpr[8]! >>> 0) + (emu.cpu!.s.gpr[9]! >>> 0) * 2 ** 32;
        expect(rsp).toBe(TSS_RSP0 - 48);
      });
    }
    it('ring 3 can run ordinary code and take INT 0x80 through a DPL-3 gate', () => {
      const code = assemble(toRing3('mov eax, 7\nint 0x80'));
      const r = emu.run(code, state());
      expect(r.exception?.vector).toBe(0x80);
      expect(r.exception!.rip).toBe(CODE_BASE + code.length); // INT n saves the next RIP
      expect(r.gpr[0]).toBe(7n);
    });
    it('INT n through a DPL-0 gate from ring 3 → #GP(vector*8+2)', () => {
      const code = assemble(toRing3('int 0x40'));
      const r = emu.run(code, state(), { setup: (_cpu, mem) => setIdtGate(mem, 0x40, 0x8000 + 16 * 0x40, 0) });
      expectException(r, GP, 0x40 * 8 + 2, lastInsn(code, 'int 0x40'));
    });
  });

  describe('INT3 → handler → IRETQ', () => {
    it('returns after the INT3 with the handler\'s work visible and RSP/RFLAGS restored', () => {
      const src = [
        '.start:',
        'mov r12, rsp',
        'int3',
        'mov r14, rsp',
        'pushfq',
        'pop r11',
        'jmp .done',
        'times 0x100 - ($ - .start) nop',
        '.handler:', // at CODE_BASE + 0x100
        'mov r15, 0x1234',
        'mov r13, [rsp]', // saved RIP
        'mov r10, [rsp + 8]', // saved CS
        'or qword [rsp + 16], 0x1', // set CF in the saved RFLAGS
        'iretq',
        '.done:',
      ].join('\n');
      const code = assemble(src);
      const r = emu.run(code, state(), { setup: (_cpu, mem) => setIdtGate(mem, BP, CODE_BASE + 0x100, 3) });
      expect(r.error).toBeUndefined();
      expect(r.exception).toBeUndefined();
      expect(r.gpr[15]).toBe(0x1234n);
      expect(r.gpr[13]).toBe(BigInt(CODE_BASE + assemble('mov r12, rsp\nint3').length));
      expect(r.gpr[10]).toBe(0x08n);
      expect(r.gpr[14]).toBe(r.gpr[12]);
      expect(Number(r.gpr[11]! & 1n)).toBe(1);
      expect(r.rip).toBe(CODE_BASE + code.length + 1);
    });
    it('aligns the stack to 16 bytes before pushing the long-mode frame', () => {
      const src = ['and rsp, -16', 'sub rsp, 8', 'mov rax, rsp', 'int3'].join('\n');
      const code = assemble(src);
      const r = emu.run(code, state());
      expect(r.exception?.vector).toBe(BP);
      expect(BigInt(r.exception!.rsp)).toBe(r.gpr[0]); // the frame saves the unaligned RSP
      const rsp = (emu.cpu!.s.gpr[8]! >>> 0) + (emu.cpu!.s.gpr[9]! >>> 0) * 2 ** 32;
      expect((rsp + 40) % 16).toBe(0); // 5 qwords below an aligned boundary
      expect(rsp + 40).toBe(Number(r.gpr[0]!) - 8);
    });
  });

  describe('more exceptions', () => {
    const PAGE = 0x50000;
    it('instruction fetch from an NX page with EFER.NXE: #PF error code P|I/D', () => {
      const code = assemble('mov ecx, 0xc0000080\nrdmsr\nbts eax, 11\nwrmsr\nmov rcx, rsi\njmp rcx');
      const r = emu.run(code, state({ 6: BigInt(PAGE) }), {
        setup: () => emu.memory.write64(PT_BASE + 8 * (PAGE >>> 12), BigInt(PAGE + (PTE_P | PTE_W | PTE_U)) | (1n << 63n)),
      });
      expectException(r, PF, PFE_P | 0x10, PAGE);
      expect(emu.cpu!.s.cr2).toBe(PAGE);
    });
    it('the NX bit without EFER.NXE is a reserved-bit #PF (error code P|RSVD)', () => {
      const code = assemble('mov eax, [rcx]');
      const r = emu.run(code, state({ 1: BigInt(PAGE) }), {
        setup: () => emu.memory.write64(PT_BASE + 8 * (PAGE >>> 12), BigInt(PAGE + (PTE_P | PTE_W | PTE_U)) | (1n << 63n)),
      });
      expectException(r, PF, PFE_P | 0x8, CODE_BASE);
    });
    it('x87 and SSE instructions with CR0.TS=1 → #NM', () => {
      for (const insn of ['fld1', 'addps xmm0, xmm1', 'fwait']) {
        const code = assemble(`mov rax, cr0\nor eax, 0xa\nmov cr0, rax\n${insn}`); // TS | MP
        expectException(emu.run(code, state()), 7, -1, lastInsn(code, insn));
      }
    });
    it('SSE instructions with CR4.OSFXSR=0 → #UD', () => {
      const code = assemble('mov rax, cr4\nbtr rax, 9\nmov cr4, rax\naddps xmm0, xmm1');
      expectException(emu.run(code, state()), UD, -1, lastInsn(code, 'addps xmm0, xmm1'));
    });
    it('MOVDQA from a misaligned address → #GP(0); MOVDQU is fine', () => {
      const code = assemble('movdqu xmm1, [rbx+1]\nmovdqa xmm0, [rbx+1]');
      const r = emu.run(code, state({ 3: 0x100n }), { ptrRegs: [3] });
      expectException(r, GP, 0, lastInsn(code, 'movdqa xmm0, [rbx+1]'));
    });
    it('RDMSR/WRMSR of an unknown MSR → #GP(0)', () => {
      for (const insn of ['rdmsr', 'wrmsr']) {
        const code = assemble(`mov ecx, 0x12345678\n${insn}`);
        expectException(emu.run(code, state()), GP, 0, lastInsn(code, insn));
      }
    });
    it('opcodes that are invalid in 64-bit mode raise #UD', () => {
      for (const op of [0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0xce, 0xd4, 0xd5, 0xd6, 0x82]) {
        const code = new Uint8Array([0x90, op, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00]);
        const r = emu.run(code, state());
        expect({ op, vector: r.exception?.vector, rip: r.exception?.rip }).toEqual({ op, vector: UD, rip: CODE_BASE + 1 });
      }
    });
    it('UD0 and UD1 raise #UD', () => {
      for (const bytes of [[0x0f, 0xff, 0xc0], [0x0f, 0xb9, 0xc0]]) {
        const r = emu.run(new Uint8Array(bytes), state());
        expectException(r, UD, -1, CODE_BASE);
      }
    });
    it('an exception that cannot be delivered (IDT limit 0) ends in a triple fault', () => {
      const r = emu.run(assemble('ud2'), state(), { setup: (cpu) => void (cpu.s.idtrLimit = 0) });
      expect(r.error, r.error).toBeUndefined();
      expect(r.shutdown).toBeDefined();
    });
    it('an IST gate switches to the TSS IST stack', () => {
      const IST1 = 0x18000;
      const r = emu.run(assemble('int3'), state(), {
        setup: (_cpu, mem) => {
          mem.write64(TSS_BASE + 0x24, BigInt(IST1));
          setIdtGate(mem, BP, 0x8000 + 16 * BP, 3, 0xe, 1);
        },
      });
      expect(r.exception?.vector).toBe(BP);
      expect((emu.cpu!.s.gpr[8]! >>> 0)).toBe(IST1 - 40);
    });
  });

  describe('SYSCALL / SYSRET', () => {
    it('ring 3 → SYSCALL → handler → SYSRETQ → ring 3', () => {
      const src = [
        '.start:',
        'mov ecx, 0xc0000080', 'rdmsr', 'or eax, 1', 'wrmsr', // EFER.SCE
        'mov ecx, 0xc0000081', 'xor eax, eax', 'mov edx, 0x00180008', 'wrmsr', // STAR: SYSCALL CS 0x08, SYSRET base 0x18
        'mov ecx, 0xc0000082', `mov eax, ${CODE_BASE} + .handler - .start`, 'xor edx, edx', 'wrmsr', // LSTAR
        'mov ecx, 0xc0000084', 'mov eax, 0x4700', 'xor edx, edx', 'wrmsr', // SFMASK: TF DF IF AC? (IF|DF|TF|NT)
        toRing3('mov r12, 0x55\nstd\nsyscall\nmov r10, rsp\nud2'),
        'times 0x200 - ($ - .start) nop',
        '.handler:',
        'mov r15, rcx', // return RIP
        'mov r14, r11', // saved RFLAGS
        'pushfq',
        'pop r13', // RFLAGS inside the handler (masked)
        'mov r9, rsp', // RSP is not switched by SYSCALL
        'o64 sysret',
      ].join('\n');
      const code = assemble(src);
      const r = emu.run(code, state());
      expect(r.error, r.error).toBeUndefined();
      expect(r.exception?.vector).toBe(UD);
      expect(r.exception!.cs).toBe(SEL_USER_CODE64);
      expect(r.exception!.ss).toBe(SEL_USER_DATA);
      const ud2At = r.exception!.rip;
      expect(r.gpr[15]).toBe(BigInt(ud2At - assemble('mov r10, rsp').length)); // RCX = RIP after SYSCALL
      expect(Number(r.gpr[14]! & 0x400n)).toBe(0x400); // R11 holds RFLAGS with DF set
      expect(Number(r.gpr[13]! & 0x4700n)).toBe(0); // SFMASK cleared DF (and IF/TF/NT) in the handler
      expect(r.gpr[9]).toBe(BigInt(USER_STACK));
      expect(r.gpr[10]).toBe(BigInt(USER_STACK));
    });
    it('SYSCALL with EFER.SCE=0 → #UD', () => {
      const code = assemble('mov ecx, 0xc0000080\nrdmsr\nbtr eax, 0\nwrmsr\nsyscall');
      expectException(emu.run(code, state()), UD, -1, lastInsn(code, 'syscall'));
    });
  });

  describe('mode switches', () => {
    it('32-bit protected mode → long mode through CR4.PAE, CR3, EFER.LME, CR0.PG and a far jump', () => {
      const src = [
        'bits 32',
        '.start:',
        'mov eax, cr4',
        'or eax, 0x20',
        'mov cr4, eax',
        'mov eax, 0x4000',
        'mov cr3, eax',
        'mov ecx, 0xc0000080',
        'rdmsr',
        'or eax, 0x100',
        'wrmsr',
        'mov eax, cr0',
        'or eax, 0x80000000',
        'mov cr0, eax',
        `jmp dword 0x08:(${CODE_BASE} + .long - .start)`,
        'bits 64',
        '.long:',
        'mov rax, 0x123456789abcdef0',
        'mov ecx, 0xc0000080',
        'mov rsi, rax',
        'rdmsr',
      ].join('\n');
      const code = assemble(src, 32);
      const r = emu.run(code, state(), { mode: 'protected32' });
      expect(r.error, r.error).toBeUndefined();
      expect(r.exception).toBeUndefined();
      expect(r.shutdown).toBeUndefined();
      expect(r.gpr[6]).toBe(0x1234_5678_9abc_def0n);
      expect(Number(r.gpr[0]! & 0x500n)).toBe(0x500); // EFER.LME | LMA as read back by RDMSR
      expect(emu.cpu!.s.mode).toBe(3); // Mode.Long64
    });
    it('long mode → compatibility mode through a far jump to a 32-bit code segment', () => {
      const src = [
        '.start:',
        'push 0x18',
        `push ${CODE_BASE} + .compat - .start`,
        'retfq',
        'bits 32',
        '.compat:',
        'mov eax, 0xffffffff',
        'add eax, 2',
      ].join('\n');
      const code = assemble(src);
      const r = emu.run(code, state());
      expect(r.error, r.error).toBeUndefined();
      expect(r.exception).toBeUndefined();
      expect(r.gpr[0]! & 0xffff_ffffn).toBe(1n);
      expect(emu.cpu!.s.mode).toBe(5); // Mode.Compat32
    });
  });
});
