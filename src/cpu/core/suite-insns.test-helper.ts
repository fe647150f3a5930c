/**
 * Directed tests of the small instructions of the x86-64-v2+ CPU model (issue 13): RDTSCP and
 * IA32_TSC_AUX, RDPID, CLFLUSHOPT/CLWB, RDFSBASE & co (CR4.FSGSBASE) and UMIP — run by cpu.test.ts
 * (interpreter) and wasm.test.ts (translated blocks). Expected values from the Intel SDM (vol. 2:
 * the instructions' pages; vol. 3 2.5: CR4.UMIP/FSGSBASE). The host CPU checks the forms user
 * mode can run in tests/cpu-oracle/system-insns.test.ts.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { run64, run32, r64, hasNasm, RAX, RBX, RSP, R8, R9, R10, R11, R12, R13 } from './asm.test-helper.js';
import { features } from '../features.js';
import { testCpuDefaults, HANDLER_MARK, STACK_TOP, type TestMachine } from './test-machine.js';
import { SYSCALL_SETUP, userPages } from './suite.test-helper.js';
import { decode, newD } from '../translate/decode.js';
import { continueSafe } from '../translate/trace.js';

const UD = HANDLER_MARK + 6;
const GP = HANDLER_MARK + 13;
const PF = HANDLER_MARK + 14;
const TSC_AUX = 0xc0000103;
/** A free page for the TSS (its RSP0: the stack of faults taken at CPL 3). */
const TSS = 0x7000;
const CR4_UMIP = 1 << 11;
const CR4_FSGSBASE = 1 << 16;

type Feature = 'rdtscp' | 'rdpid' | 'clflushopt' | 'clwb' | 'fsgsbase' | 'umip';

/** Run `body` with the named features set to `on`, restoring them afterwards. */
function withFeatures(names: readonly Feature[], on: boolean, body: () => void): void {
  const saved = names.map((n) => features[n]);
  try {
    for (const n of names) features[n] = on;
    body();
  } finally {
    names.forEach((n, i) => (features[n] = saved[i]!));
  }
}

/** User pages and a TSS whose RSP0 takes faults raised at CPL 3. */
function userSetup(t: TestMachine): void {
  userPages(t);
  t.cpu.s.trBase = TSS;
  t.memory.write32(TSS + 4, STACK_TOP - 0x2000);
  t.memory.write32(TSS + 8, 0);
}

/** The error code of the exception frame at RSP (for vectors that push one). */
const errorCode = (t: TestMachine): number => t.memory.read32(Number(r64(t, RSP)));

/** Code that enables CR4 bits `bits` (at CPL 0). */
const setCr4 = (bits: number): string => `
        mov rax, cr4
        or eax, ${bits}
        mov cr4, rax`;

/** Code that goes to CPL 3 at `user:` (SYSCALL returns to `entry:` at CPL 0). */
const toUser = `${SYSCALL_SETUP}
        lea rcx, [rel user]
        mov r11, 0x2
        o64 sysret`;

export function insnSuite(label: string, jitThreshold: number): void {
  const d = hasNasm ? describe : describe.skip;
  beforeAll(() => {
    testCpuDefaults.jitThreshold = jitThreshold;
  });

  d(`${label}: RDTSCP and IA32_TSC_AUX`, () => {
    it('returns the TSC in EDX:EAX and TSC_AUX in ECX (upper halves cleared), in a loop', () => {
      withFeatures(['rdtscp'], true, () => {
        const t = run64(`
          mov ecx, ${TSC_AUX}
          mov eax, 0x89abcdef
          xor edx, edx
          wrmsr
          rdmsr
          mov r12, rax
          mov r13, -1
          rdtsc
          shl rdx, 32
          or rax, rdx
          mov r8, rax             ; TSC before
          mov ebx, 4
        .again:
          mov rcx, -1
          mov rdx, -1
          rdtscp
          mov r9, rdx
          mov r10, rcx
          shl rdx, 32
          or rax, rdx
          cmp rax, r8
          jb .back                ; the TSC went backwards
          mov r8, rax
          dec ebx
          jnz .again
          xor r13d, r13d
        .back:
          hlt`);
        expect(r64(t, R12)).toBe(0x89abcdefn);
        expect(r64(t, R10)).toBe(0x89abcdefn);
        expect(r64(t, R9) >> 32n).toBe(0n);
        expect(r64(t, R13)).toBe(0n);
      });
    });

    it('WRMSR TSC_AUX with bits 63:32 set is #GP(0); power-on value 0', () => {
      withFeatures(['rdtscp'], true, () => {
        const t = run64(`
          mov ecx, ${TSC_AUX}
          rdmsr
          mov r12, rax
          mov eax, 1
          mov edx, 1
          wrmsr
          hlt`);
        expect(r64(t, R12)).toBe(0n);
        expect(r64(t, RAX)).toBe(BigInt(GP));
        expect(errorCode(t)).toBe(0);
        expect(t.cpu.s.tscAux).toBe(0);
      });
    });

    it('#GP(0) at CPL 3 with CR4.TSD, allowed at CPL 3 without it', () => {
      withFeatures(['rdtscp'], true, () => {
        const ok = run64(`${toUser}
          user:
          rdtscp
          mov ebx, 0x55
          syscall
          entry:
          hlt`, userSetup);
        expect(r64(ok, RBX)).toBe(0x55n);
        const t = run64(`${setCr4(4)}${toUser}
          user:
          rdtscp
          mov ebx, 0x55
          syscall
          entry:
          hlt`, userSetup);
        expect(r64(t, RAX)).toBe(BigInt(GP));
        expect(errorCode(t)).toBe(0);
        expect(r64(t, RBX)).toBe(0n);
      });
    });

    it('#UD, and TSC_AUX #GP, when neither RDTSCP nor RDPID is on', () => {
      withFeatures(['rdtscp', 'rdpid'], false, () => {
        expect(r64(run64('rdtscp\nhlt'), RAX)).toBe(BigInt(UD));
        expect(r64(run64(`mov ecx, ${TSC_AUX}\nrdmsr\nhlt`), RAX)).toBe(BigInt(GP));
      });
    });

    it('lets a translated block go on (like RDTSC, and SWAPGS, CLAC, STAC); the rest of group 7 ends it', () => {
      const dec = (bytes: number[]): boolean => {
        const insn = newD();
        expect(decode(new Uint8Array(bytes), 0, bytes.length, 0, insn)).toBe(true);
        return continueSafe(insn);
      };
      expect(dec([0x0f, 0x01, 0xf9])).toBe(true); // rdtscp
      expect(dec([0x41, 0x0f, 0x01, 0xf9])).toBe(true); // REX.B does not change the opcode
      expect(dec([0x0f, 0x01, 0xf8])).toBe(true); // swapgs (translated code reads the GS base at each access)
      expect(dec([0x0f, 0x01, 0xfa])).toBe(false); // monitorx (reg 7, rm 2)
      expect(dec([0x0f, 0x01, 0xca])).toBe(true); // clac
      expect(dec([0x0f, 0x01, 0xcb])).toBe(true); // stac
      expect(dec([0x0f, 0x01, 0xc8])).toBe(false); // monitor (reg 1, rm 0)
      expect(dec([0x0f, 0x01, 0x39])).toBe(false); // invlpg [rcx]
      expect(dec([0x0f, 0x31])).toBe(true); // rdtsc
    });
  });

  d(`${label}: RDPID`, () => {
    it('reads TSC_AUX into a 64-bit register, zero-extended (32-bit register outside 64-bit mode)', () => {
      withFeatures(['rdpid'], true, () => {
        const t = run64(`
          mov ecx, ${TSC_AUX}
          mov eax, 0xfedcba98
          xor edx, edx
          wrmsr
          mov ebx, 3
          mov r11, -1
        .again:
          mov rax, -1
          rdpid rax
          rdpid r11
          dec ebx
          jnz .again
          pushfq
          pop r8
          hlt`);
        expect(r64(t, RAX)).toBe(0xfedcba98n);
        expect(r64(t, R11)).toBe(0xfedcba98n);
        const u = run32(`
          mov ecx, ${TSC_AUX}
          mov eax, 7
          xor edx, edx
          wrmsr
          mov eax, -1
          rdpid eax
          hlt`);
        expect(r64(u, RAX)).toBe(7n);
      });
    });

    it('is allowed at CPL 3 even with CR4.TSD; #UD when off', () => {
      withFeatures(['rdpid'], true, () => {
        const t = run64(`${setCr4(4)}
          mov ecx, ${TSC_AUX}
          mov eax, 5
          xor edx, edx
          wrmsr${toUser}
          user:
          rdpid rbx
          syscall
          entry:
          hlt`, userSetup);
        expect(r64(t, RBX)).toBe(5n);
        expect(t.cpu.s.cpl).toBe(0);
      });
      withFeatures(['rdpid'], false, () => {
        expect(r64(run64('rdpid rax\nhlt'), RAX)).toBe(BigInt(UD));
      });
    });
  });

  d(`${label}: CLFLUSHOPT and CLWB`, () => {
    for (const insn of ['clflushopt', 'clwb', 'clflush']) {
      it(`${insn}: no store, no flags; faults like a byte load (#PF not present, #GP non-canonical)`, () => {
        withFeatures(['clflushopt', 'clwb'], true, () => {
          const t = run64(`
            mov rdi, 0x200000
            mov qword [rdi], 0x1234
            mov ebx, 3
          .again:
            ${insn} [rdi + 8]
            ${insn} [rdi]
            dec ebx
            jnz .again
            mov eax, 0x8d5
            push rax
            popfq
            ${insn} [rdi]
            pushfq
            pop r8
            mov r9, [rdi]
            hlt`);
          expect(r64(t, R9)).toBe(0x1234n);
          expect(Number(r64(t, R8)) & 0x8d5).toBe(0x8d5);
          const pf = run64(`
            mov rbx, 0x40000000     ; 1 GiB: not mapped
            ${insn} [rbx + 3]
            hlt`);
          expect(r64(pf, RAX)).toBe(BigInt(PF));
          expect(pf.cpu.s.cr2).toBe(0x40000003);
          expect(errorCode(pf)).toBe(0); // a read: not present, supervisor
          const gp = run64(`
            mov rbx, 0x0000800000000000
            ${insn} [rbx]
            hlt`);
          expect(r64(gp, RAX)).toBe(BigInt(GP));
          expect(errorCode(gp)).toBe(0);
        });
      });
    }

    it('#UD when off; the fences with a 66 prefix (66 0F AE /6 register form: TPAUSE) are #UD, as on the host', () => {
      withFeatures(['clflushopt'], false, () => {
        expect(r64(run64('mov rdi, 0x200000\nclflushopt [rdi]\nhlt'), RAX)).toBe(BigInt(UD));
      });
      withFeatures(['clwb'], false, () => {
        expect(r64(run64('mov rdi, 0x200000\nclwb [rdi]\nhlt'), RAX)).toBe(BigInt(UD));
      });
      const t = run64('mov ebx, 1\ndb 0x66, 0x0f, 0xae, 0xf0\nmov ebx, 2\nhlt');
      expect(r64(t, RAX)).toBe(BigInt(UD));
      expect(r64(t, RBX)).toBe(1n);
      for (const modrm of [0xe8, 0xf8]) expect(r64(run64(`db 0x66, 0x0f, 0xae, ${modrm}\nhlt`), RAX)).toBe(BigInt(UD));
      const f = run64('lfence\nmfence\nsfence\nmov ebx, 2\nhlt');
      expect(r64(f, RBX)).toBe(2n);
    });
  });

  d(`${label}: RDFSBASE, RDGSBASE, WRFSBASE, WRGSBASE`, () => {
    it('a new FS base is seen by the next access, in a loop; reads in 32 and 64 bits', () => {
      withFeatures(['fsgsbase'], true, () => {
        const t = run64(`${setCr4(CR4_FSGSBASE)}
          xor r8d, r8d
          mov ecx, 3
          lea rsi, [rel bases]
        .again:
          mov rax, [rsi + rcx * 8 - 8]
          wrfsbase rax
          add r8, [fs:0x10]
          rdfsbase r9
          dec ecx
          jnz .again
          mov rax, 0xffff800000201000
          wrgsbase rax
          rdgsbase r10
          rdgsbase r11d
          mov rax, 0xffffffff00202000
          wrgsbase eax              ; 32 bits: the upper half of the base is cleared
          mov r12, [gs:0x10]
          rdgsbase r13
          hlt
          align 8
          bases: dq 0x200000, 0x201000, 0x202000`, (m) => {
          m.memory.write32(0x200010, 1);
          m.memory.write32(0x201010, 10);
          m.memory.write32(0x202010, 100);
        });
        expect(r64(t, R8)).toBe(111n);
        expect(r64(t, R9)).toBe(0x200000n);
        expect(r64(t, R10)).toBe(0xffff800000201000n);
        expect(r64(t, R11)).toBe(0x201000n);
        expect(r64(t, R12)).toBe(100n);
        expect(r64(t, R13)).toBe(0x202000n);
        expect(t.cpu.s.segBase[4]).toBe(0x200000);
      });
    });

    it('#GP(0) for a non-canonical 64-bit base (the base is kept)', () => {
      withFeatures(['fsgsbase'], true, () => {
        const t = run64(`${setCr4(CR4_FSGSBASE)}
          mov rax, 0x1000
          wrfsbase rax
          mov rax, 0x0000800000000000
          wrfsbase rax
          hlt`);
        expect(r64(t, RAX)).toBe(BigInt(GP));
        expect(errorCode(t)).toBe(0);
        expect(t.cpu.s.segBase[4]).toBe(0x1000);
      });
    });

    it('#UD without CR4.FSGSBASE and outside 64-bit mode; CR4.FSGSBASE is reserved (#GP) when off', () => {
      withFeatures(['fsgsbase'], true, () => {
        expect(r64(run64('rdfsbase rax\nhlt'), RAX)).toBe(BigInt(UD));
        expect(r64(run64('wrgsbase rax\nhlt'), RAX)).toBe(BigInt(UD));
        expect(r64(run32(`mov eax, cr4\nor eax, ${CR4_FSGSBASE}\nmov cr4, eax\ndb 0xf3, 0x0f, 0xae, 0xc0 ; rdfsbase eax\nhlt`), RAX)).toBe(BigInt(UD));
        const user = run64(`${setCr4(CR4_FSGSBASE)}${toUser}
          user:
          rdgsbase rbx              ; allowed at CPL 3
          mov rax, 0x3000
          wrfsbase rax
          syscall
          entry:
          hlt`, userSetup);
        expect(user.cpu.s.cpl).toBe(0);
        expect(user.cpu.s.segBase[4]).toBe(0x3000);
      });
      withFeatures(['fsgsbase'], false, () => {
        const t = run64(`${setCr4(CR4_FSGSBASE)}\nhlt`);
        expect(r64(t, RAX)).toBe(BigInt(GP));
      });
    });
  });

  d(`${label}: UMIP`, () => {
    const forms = ['sgdt [rel buf]', 'sidt [rel buf]', 'sldt [rel buf]', 'str [rel buf]', 'smsw [rel buf]', 'sldt eax', 'str eax', 'smsw eax'];
    for (const form of forms) {
      it(`${form}: #GP(0) at CPL 3 with CR4.UMIP, allowed at CPL 0 with it and at CPL 3 without`, () => {
        withFeatures(['umip'], true, () => {
          const prog = (cr4: number): string => `${setCr4(cr4)}
            ${form}
            mov r12d, 1${toUser}
            user:
            ${form}
            mov ebx, 0x55
            syscall
            entry:
            hlt
            buf: times 16 db 0`;
          const t = run64(prog(CR4_UMIP), userSetup);
          expect(r64(t, R12)).toBe(1n);
          expect(r64(t, RAX)).toBe(BigInt(GP));
          expect(errorCode(t)).toBe(0);
          expect(r64(t, RBX)).toBe(0n);
          const u = run64(prog(0), userSetup);
          expect(r64(u, RBX)).toBe(0x55n);
          expect(u.cpu.s.cpl).toBe(0);
        });
      });
    }

    it('CR4.UMIP is reserved (#GP) when the feature is off', () => {
      withFeatures(['umip'], false, () => {
        expect(r64(run64(`${setCr4(CR4_UMIP)}\nhlt`), RAX)).toBe(BigInt(GP));
      });
      withFeatures(['umip'], true, () => {
        const t = run64(`${setCr4(CR4_UMIP)}\nmov rax, cr4\nhlt`);
        expect(Number(r64(t, RAX)) & CR4_UMIP).toBe(CR4_UMIP);
      });
    });
  });
}
