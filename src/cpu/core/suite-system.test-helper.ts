/**
 * The CPU core's directed tests of its system side — debug facilities and exception frames,
 * SMEP and SMAP, paging and faults, interrupts and HLT, 32-bit and real mode, system
 * instructions — run by cpu.test.ts (interpreter) and wasm.test.ts (translated blocks) beside
 * coreSuite (suite.test-helper.ts).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { run64, run32, r64, hasNasm, assemble, RAX, RCX, RDX, RBX, RSP, RDI, R8, R9, R10, R11, R12, R13, R14, R15 } from './asm.test-helper.js';
import { features } from '../features.js';
import { createTestMachine, testCpuDefaults, enterLongMode, enterReal, CODE_BASE, STACK_TOP, HANDLER_MARK, type TestMachine } from './test-machine.js';
import { SYSCALL_SETUP, userPages } from './suite.test-helper.js';

/** The system-side directed tests, with blocks translated after `jitThreshold` executions (Infinity: interpreted). */
/** Test-machine setup: the 2 MiB page at 2 MiB present and read-only (CR0.WP on), holding `value`. */
function readOnlyPage(value?: number): (m: TestMachine) => void {
  return (m) => {
    m.memory.write32(0x3000 + 8, 0x200081); // 2 MiB page at 2 MiB: present, not writable
    m.cpu.s.cr0 |= 0x10000; // WP
    if (value !== undefined) m.memory.write32(0x200000, value);
  };
}

export function systemSuite(label: string, jitThreshold: number): void {
  const d = hasNasm ? describe : describe.skip;
  beforeAll(() => {
    testCpuDefaults.jitThreshold = jitThreshold;
  });

  d(`${label}: debug facilities and exception frames`, () => {
    /** Point IDT gate `v` (64-bit IDT at 0x4000, selector and type already set) at `label`. */
    const gate = (v: number, label: string): string => `
        lea rax, [rel ${label}]
        mov [${0x4000 + v * 16}], ax
        shr rax, 16
        mov [${0x4000 + v * 16 + 6}], ax
        shr rax, 16
        mov [${0x4000 + v * 16 + 8}], eax`;

    it('flags a dead write leaves reach the frame of a fault before the next write; fault frames have RF set, INT3 frames not', () => {
      const t = run64(`
        mov rax, -1
        add rax, 1              ; CF=1 ZF=1, rewritten by the cmp below: only the #PF frame shows them
        mov rbx, 0x40000000     ; not mapped
        mov rcx, [rbx]
        cmp rax, 5
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      const flags = t.memory.read32(Number(r64(t, RSP)) + 24);
      expect(flags & 0x41).toBe(0x41);
      expect(flags & 0x10000).toBe(0x10000); // RF
      const ud = run64('ud2\nhlt');
      expect(ud.memory.read32(Number(r64(ud, RSP)) + 16) & 0x10000).toBe(0x10000);
      const bp = run64('int3\nhlt');
      expect(bp.memory.read32(Number(r64(bp, RSP)) + 16) & 0x10000).toBe(0);
    });

    it('TF: a #DB after each instruction from the one after the POPF that sets it, to the POPF that clears it', () => {
      const t = run64(`${gate(1, 'db')}
        xor r8d, r8d
        pushfq
        or qword [rsp], 0x100
        popfq                   ; sets TF: no trap after it
        mov eax, 1              ; 1
        mov ebx, 2              ; 2
        pushfq                  ; 3
        and qword [rsp], ~0x100 ; 4
        popfq                   ; 5: TF was set when it began
        mov ecx, 3
        hlt
      db:
        inc r8
        mov r9, dr6
        mov r10, [rsp]
        iretq`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, R8)).toBe(5n);
      expect(Number(r64(t, R9)) & 0x400f).toBe(0x4000); // DR6.BS
      expect(r64(t, RCX)).toBe(3n);
      expect(t.cpu.s.rflagsRest & 0x100).toBe(0);
    });

    it('TF: no trap after INT n (delivery clears TF) and after MOV SS it waits one instruction', () => {
      const t = run64(`${gate(1, 'db')}${gate(0x40, 'soft')}
        xor r8d, r8d
        xor r12d, r12d
        pushfq
        or qword [rsp], 0x100
        popfq
        int 0x40                ; the handler is not traced; no trap after INT
        mov ax, ss              ; 1 (after the handler's IRETQ: the trap comes after this one)
        mov ss, ax              ; no trap here...
        nop                     ; 2: ...but after this
        pushfq                  ; 3
        and qword [rsp], ~0x100 ; 4
        popfq                   ; 5
        hlt
      soft:
        inc r12
        iretq
      db:
        inc r8
        iretq`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, R12)).toBe(1n);
      expect(r64(t, R8)).toBe(5n);
    });

    it('instruction breakpoint: #DB before the instruction, RF in the frame lets it run once', () => {
      const t = run64(`${gate(1, 'db')}
        xor r8d, r8d
        lea rax, [rel target]
        mov dr0, rax
        mov eax, 1              ; L0, execute, length 1
        mov dr7, rax
        xor ebx, ebx
      target:
        add ebx, 7
        xor eax, eax
        mov dr7, rax
        lea r13, [rel target]
        hlt
      db:
        inc r8
        mov r9, dr6
        mov r10, [rsp]
        or qword [rsp + 16], 0x10000
        cmp r8, 5
        jae .stop               ; a breakpoint that keeps firing is a failure, not a hang
        iretq
      .stop:
        hlt`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, R8)).toBe(1n);
      expect(r64(t, RBX)).toBe(7n);
      expect(Number(r64(t, R9)) & 0xf).toBe(1);
      expect(r64(t, R10)).toBe(r64(t, R13)); // the frame's RIP: the instruction itself (a fault)
    });

    it('data breakpoints: a write watch traps after the store only, a read/write watch after loads too', () => {
      const t = run64(`${gate(1, 'db')}
        xor r8d, r8d
        xor r11d, r11d
        lea rax, [rel var]
        mov dr1, rax
        mov dr2, rax
        mov eax, (1 << 2) | (1 << 20) | (3 << 22)   ; DR1: L1, write, 4 bytes
        mov dr7, rax
        mov eax, [rel var + 2]  ; read: no trap
        mov word [rel var + 2], 5
      after_store:
        mov ecx, [rel var + 4]  ; outside the watched 4 bytes
        mov r14, r8
        mov eax, (1 << 4) | (3 << 24) | (1 << 26)   ; DR2: L2, read/write, 2 bytes
        mov dr7, rax
        mov eax, [rel var + 1]  ; overlaps [var, var+2): trap
      after_load:
        xor eax, eax
        mov dr7, rax
        lea r12, [rel after_store]
        lea r13, [rel after_load]
        add r12, r13
        hlt
      db:
        inc r8
        mov r9, dr6
        mov r10, [rsp]
        add r11, r10
        iretq
        align 8
      var: dq 0`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, R14)).toBe(1n);
      expect(r64(t, R8)).toBe(2n);
      expect(Number(r64(t, R9)) & 0xf).toBe(4);
      expect(r64(t, R11)).toBe(r64(t, R12)); // the frames' RIPs: after each access (traps)
    });
  });

  d(`${label}: SMEP and SMAP`, () => {
    /** Features on for the test; the 2 MiB page at 4 MiB (USER) becomes a user page, the rest stays supervisor. */
    const withSmx = (fn: () => void): void => {
      const saved = [features.smep, features.smap];
      try {
        features.smep = true;
        features.smap = true;
        fn();
      } finally {
        [features.smep, features.smap] = saved as [boolean, boolean];
      }
    };
    const USER = 0x400000;
    const userPage = (m: TestMachine): void => {
      m.memory.write32(0x1000, 0x2007);
      m.memory.write32(0x2000, 0x3007);
      m.memory.write32(0x3000 + 2 * 8, USER | 0x87);
      // a 64-bit TSS at 0x8000 whose RSP0 is the kernel stack, for exceptions raised at CPL 3
      m.memory.write32(0x8004, STACK_TOP);
      m.cpu.s.trBase = 0x8000;
      m.cpu.s.trLimit = 0x67;
      m.cpu.s.trAttr = 0x8b;
    };
    const SMAP_ON = 'mov rax, cr4\n bts rax, 21\n mov cr4, rax';
    const SMEP_ON = 'mov rax, cr4\n bts rax, 20\n mov cr4, rax';
    const errorCode = (t: TestMachine): number => t.memory.read32(Number(r64(t, RSP)));

    it('SMAP: STAC opens user pages to the kernel, CLAC closes them again (also after they were used)', () => withSmx(() => {
      const t = run64(`
        mov rbx, ${USER}
        mov rdx, [rbx]          ; SMAP off: allowed (this entry must not survive CR4.SMAP)
        ${SMAP_ON}
        mov ecx, 50
      .l:
        stac
        mov rdx, [rbx]
        add qword [rbx + 8], 1
        clac
        dec ecx
        jnz .l
        mov r8d, 1
        mov r9, [rbx + 16]      ; AC clear: #PF
        hlt`, userPage);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(r64(t, R8)).toBe(1n);
      expect(t.memory.read32(USER + 8)).toBe(50);
      expect(t.cpu.s.cr2).toBe(USER + 16);
      expect(errorCode(t)).toBe(1); // P, read, supervisor
    }));

    it('SMAP: the first kernel access after CR4.SMAP is set faults, a write with W', () => withSmx(() => {
      const t = run64(`
        mov rbx, ${USER}
        mov qword [rbx], 7      ; SMAP off: allowed, and held writable in the TLB
        ${SMAP_ON}
        mov qword [rbx], 8
        hlt`, userPage);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(errorCode(t)).toBe(3); // P, write, supervisor
      expect(t.memory.read32(USER)).toBe(7);
    }));

    it('SMAP: POPF sets and clears AC; so do IRETQ and SYSCALL (SFMASK)', () => withSmx(() => {
      const t = run64(`
        ${SMAP_ON}
        mov rbx, ${USER}
        pushfq
        or dword [rsp], 0x40000
        popfq
        mov r8, [rbx]           ; AC from POPF: allowed
        mov r9d, 1
        mov rax, rsp            ; IRETQ to the next instruction with AC clear
        push 0x10
        push rax
        pushfq
        and dword [rsp], ~0x40000
        push 0x08
        lea rax, [rel .after]
        push rax
        iretq
      .after:
        mov r10d, 1
        mov r11, [rbx]          ; #PF
        hlt`, (m) => {
        userPage(m);
        m.memory.write32(USER, 0x1234);
      });
      expect(r64(t, R8)).toBe(0x1234n);
      expect(r64(t, R9)).toBe(1n);
      expect(r64(t, R10)).toBe(1n);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(errorCode(t)).toBe(1);
    }));

    it('SMAP: AC set at CPL 3 reaches the kernel through SYSCALL unless SFMASK clears it', () => withSmx(() => {
      for (const mask of [0, 0x40000]) {
        const user = assemble(`
          mov rsp, ${USER + 0x1000}
          pushfq
          or dword [rsp], 0x40000
          popfq
          syscall`, 64, USER);
        const t = run64(`${SYSCALL_SETUP}
          ${SMAP_ON}
          mov ecx, 0xc0000084    ; SFMASK
          mov eax, ${mask}
          xor edx, edx
          wrmsr
          mov rcx, ${USER}
          mov r11, 0x2
          o64 sysret
        entry:
          mov rsp, ${STACK_TOP}
          mov r8, [${USER} + 0x800]
          mov r9d, 1
          hlt`, (m) => {
          userPage(m);
          m.memory.writeBytes(USER, user);
          m.memory.write32(USER + 0x800, 0x77);
        });
        expect(t.cpu.s.cpl).toBe(0);
        if (mask === 0) {
          expect(r64(t, R8)).toBe(0x77n);
          expect(r64(t, R9)).toBe(1n);
        } else {
          expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
          expect(errorCode(t)).toBe(1);
        }
      }
    }));

    it('SMAP: descriptor-table reads are implicit accesses, denied a user page even with AC (SDM; QEMU lets them through)', () => withSmx(() => {
      const t = run64(`
        mov ax, 0x40
        lldt ax
        mov ax, 0x04            ; LDT entry 0
        mov ds, ax              ; SMAP off: loads
        mov r8w, ds
        mov ax, 0x10
        mov ds, ax
        ${SMAP_ON}
        stac
        mov r9, [${USER} + 0x100] ; explicit with AC: allowed (the TLB now holds the page for the kernel)
        mov ax, 0x04
        mov ds, ax              ; implicit: #PF
        hlt`, (m) => {
        userPage(m);
        // GDT 0x40: an LDT (16-byte system descriptor) at USER + 0x100, limit 0xf; its entry 0 a data segment
        m.memory.write32(0x500 + 0x40, ((USER + 0x100) << 16 | 0xf) >>> 0);
        m.memory.write32(0x500 + 0x44, (((USER + 0x100) & 0xff000000) | 0x8200 | (((USER + 0x100) >>> 16) & 0xff)) >>> 0);
        m.memory.write32(0x500 + 0x48, 0);
        m.memory.write32(0x500 + 0x4c, 0);
        m.cpu.s.gdtrLimit = 0x4f;
        m.memory.write32(USER + 0x100, 0x0000ffff);
        m.memory.write32(USER + 0x104, 0x00cf9300);
      });
      expect(r64(t, R8) & 0xffffn).toBe(4n);
      expect(r64(t, R9)).toBe(0x00cf93000000ffffn);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.cpu.s.cr2).toBe(USER + 0x100);
      expect(errorCode(t) & 0xffff).toBe(1);
    }));

    it('SMAP: an exception frame pushed at CPL 0 is an explicit access (AC lets it reach a user-page stack)', () => withSmx(() => {
      const t = run64(`
        ${SMAP_ON}
        mov rsp, ${USER + 0x1000}
        lea r12, [rel .ret]
        stac
        int 0x50
      .ret:
        hlt`, userPage);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 0x50));
      expect(t.memory.read32(USER + 0x1000 - 40)).toBe(Number(r64(t, R12))); // the frame's RIP
      const u = run64(`
        ${SMAP_ON}
        mov rsp, ${USER + 0x1000}
        int 0x50
        hlt`, userPage);
      expect(u.cpu.shutdown).toBeDefined(); // #PF pushing the frame, #PF pushing that one: #DF, triple fault
    }));

    it('SMEP: the kernel cannot run code on a user page (#PF with I/D); CR4 changes take effect at once', () => withSmx(() => {
      const t = run64(`
        mov rbx, ${USER}
        call rbx                ; SMEP off: runs (and the TLB holds the page as executable)
        mov r8d, 1
        ${SMEP_ON}
        call rbx
        hlt`, (m) => {
        userPage(m);
        m.memory.write8(USER, 0xc3); // ret
      });
      expect(r64(t, R8)).toBe(1n);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.cpu.s.cr2).toBe(USER);
      expect(errorCode(t)).toBe(0x11); // P, I/D, supervisor
    }));

    it('STAC/CLAC: #UD at CPL 3 and while SMAP is not advertised; CR4.SMEP/SMAP reserved then', () => {
      const saved = [features.smep, features.smap];
      try {
        features.smap = true;
        const user = assemble('stac\nhlt', 64, USER);
        const t = run64(`${SYSCALL_SETUP}
          mov rcx, ${USER}
          mov r11, 0x2
          o64 sysret
        entry:
          hlt`, (m) => {
          userPage(m);
          m.memory.writeBytes(USER, user);
        });
        expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 6));
        features.smap = false;
        features.smep = false;
        expect(r64(run64('clac\nhlt'), RAX)).toBe(BigInt(HANDLER_MARK + 6));
        expect(r64(run64(`${SMAP_ON}\nhlt`), RAX)).toBe(BigInt(HANDLER_MARK + 13));
        expect(r64(run64(`${SMEP_ON}\nhlt`), RAX)).toBe(BigInt(HANDLER_MARK + 13));
        features.smap = true;
        const u = run64('stac\npushfq\npop r8\nclac\npushfq\npop r9\nhlt'); // CR4.SMAP clear: STAC still sets AC
        expect(Number(r64(u, R8)) & 0x40000).toBe(0x40000);
        expect(Number(r64(u, R9)) & 0x40000).toBe(0);
        expect(r64(run64('db 0x66\nstac\nhlt'), RAX)).toBe(BigInt(HANDLER_MARK + 6)); // NP
      } finally {
        [features.smep, features.smap] = saved as [boolean, boolean];
      }
    });
  });

  d(`${label}: paging and faults`, () => {
    it('#PF with CR2 and error code for a not-present page', () => {
      const t = run64(`
        mov rbx, 0x40000000     ; 1 GiB: not mapped
        mov rax, [rbx]
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.cpu.s.cr2).toBe(0x40000000);
      const sp = Number(r64(t, RSP));
      expect(t.memory.read32(sp)).toBe(0); // error code: not present, read, supervisor
      expect(t.memory.read32(sp + 8)).toBe(CODE_BASE + 5);
    });

    it('flags of a compare reach the #PF frame of a later load (and a later branch)', () => {
      const t = run64(`
        mov rax, 5
        cmp rax, 5              ; ZF=1 CF=0: read by the jz below, after the load
        mov edx, 7
        mov rbx, 0x40000000     ; not mapped
        mov rcx, [rbx]
        jz .z
        hlt
      .z:
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      const sp = Number(r64(t, RSP));
      expect(t.memory.read32(sp + 8)).toBe(CODE_BASE + 19); // the load (nasm shortens the movs to 5 bytes)
      expect(t.memory.read32(sp + 24) & 0x41).toBe(0x40); // RFLAGS: ZF set, CF clear
    });

    it('#PF on write to a read-only page with W bit in the error code', () => {
      const t = run64(
        `
        mov rbx, 0x200000
        mov dword [rbx], 5
        hlt`,
        readOnlyPage(),
      );
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.memory.read32(Number(r64(t, RSP)))).toBe(3);
    });

    it('a #PF in the store of ADC shows the flags from before it (CF from the CMP)', () => {
      const t = run64(
        `
        mov rbx, 0x200000
        mov rax, [rbx]           ; the page is readable: ADC's load finds it in the TLB
        mov ecx, 1
        cmp ecx, 2               ; CF = 1, ZF = 0
      a:
        adc dword [rbx], 5       ; its store faults (read-only page)
        hlt`,
        readOnlyPage(0xaaaa),
      );
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      const sp = Number(r64(t, RSP));
      const flags = t.memory.read32(sp + 24);
      expect(flags & 0x41).toBe(0x01); // CF set, ZF clear: the CMP's, not the ADC's (0xaaaa + 5 + 1: no carry)
      expect(t.memory.read32(0x200000)).toBe(0xaaaa);
    });

    it.each([
      'rcl dword [rbx], 1', 'inc dword [rbx]', 'neg dword [rbx]', 'shl dword [rbx], 3', 'shrd [rbx], ecx, 4',
      'xadd [rbx], ecx', 'cmpxchg [rbx], ecx', 'sbb byte [rbx], 1',
    ])('a #PF in the store of %s shows the flags from before it', (insn) => {
      const t = run64(
        `
        mov rbx, 0x200000
        mov rax, [rbx]           ; the page is readable: the load finds it in the TLB
        mov ecx, 1
        cmp ecx, 2               ; CF, PF, AF and SF set; ZF and OF clear
        ${insn}                  ; its store faults (read-only page)
        hlt`,
        readOnlyPage(0x8000_0001),
      );
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.memory.read32(Number(r64(t, RSP)) + 24) & 0x8d5).toBe(0x95);
      expect(t.memory.read32(0x200000)).toBe(0x8000_0001);
    });

    it('a #PF in LEAVE\'s load leaves RSP and RBP as they were', () => {
      const t = run64(
        `
        mov r8, rsp
        mov rbp, 0x200000        ; not present
      a:
        leave
        hlt`,
        (m) => m.memory.write32(0x3000 + 8, 0),
      );
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      const sp = Number(r64(t, RSP));
      expect(t.memory.read32(sp + 32)).toBe(Number(r64(t, R8))); // the frame's RSP: untouched
      expect(r64(t, 5)).toBe(0x200000n); // RBP
    });

    it('#GP on non-canonical address', () => {
      const t = run64(`
        mov rbx, 0x0000800000000000
        mov rax, [rbx]
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 13));
    });

    it('page-crossing store that faults does not partially commit', () => {
      const t = run64(`
        mov rbx, 0x1ffffe
        mov dword [rbx], 0x11223344
        hlt`, (m) => m.memory.write32(0x3008, 0));
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.cpu.s.cr2).toBe(0x200000);
      expect(t.memory.read16(0x1ffffe)).toBe(0);
    });

    it('loads and stores that cross into the next page, and ones that end on the last byte of a page', () => {
      // linear 2 MiB maps to physical 4 MiB, so an access crossing 0x200000 has its two halves
      // in physical pages apart; three turns: the first fills the TLB, the later ones find both
      // pages in it, and a translated block must still send the crossing accesses down its slow path
      const t = run64(
        `
        mov rdx, 0x1122334455667788
        mov ecx, 3
      l:
        mov [0x1ffffc], rdx
        mov rax, [0x1ffffc]
        mov [0x1ffff8], rdx
        mov r9, [0x1ffff8]
        mov [0x1fffff], dx
        movzx edi, word [0x1fffff]
        mov [0x1ffffe], edx
        mov r8d, [0x1ffffe]
        mov r10, 0x0101010101010101
        add rdx, r10
        dec ecx
        jnz l
        hlt`,
        (m) => m.memory.write32(0x3008, 0x400083),
      );
      const last = 0x1122334455667788n + 2n * 0x0101010101010101n;
      const b = (i: number): number => Number((last >> BigInt(8 * i)) & 0xffn);
      expect(r64(t, RAX)).toBe(last);
      expect(r64(t, R9)).toBe(last);
      expect(r64(t, RDI)).toBe(last & 0xffffn);
      expect(r64(t, R8)).toBe(last & 0xffffffffn);
      // bytes below 2 MiB: the 8-byte store ending there, then the 4-byte store
      expect([0x1ffffc, 0x1ffffd, 0x1ffffe, 0x1fffff].map((a) => t.memory.read8(a))).toEqual([b(4), b(5), b(0), b(1)]);
      // above: at physical 4 MiB, never at physical 2 MiB
      expect([0x400000, 0x400001, 0x400002, 0x400003].map((a) => t.memory.read8(a))).toEqual([b(2), b(3), b(6), b(7)]);
      expect(t.memory.read32(0x200000)).toBe(0);
    });

    it('invlpg and CR3 reload drop stale translations', () => {
      const t = run64(`
        mov rax, [0x200000]      ; fill TLB for page 2 MiB -> phys 2 MiB
        mov dword [0x3008], 0x400083   ; remap 2 MiB -> 4 MiB
        invlpg [0x200000]
        mov rbx, [0x200000]
        mov rcx, cr3
        mov cr3, rcx
        hlt`,
        (m) => {
          m.memory.write32(0x200000, 0xaaaa);
          m.memory.write32(0x400000, 0xbbbb);
        },
      );
      expect(r64(t, RAX)).toBe(0xaaaan);
      expect(r64(t, RBX)).toBe(0xbbbbn);
    });

    it('MMIO pages go to the mmio bus (8-byte split in two)', () => {
      const log: string[] = [];
      const t = run64(
        `
        mov rbx, 0xfee00000
        mov dword [rbx + 0x80], 0x12
        mov eax, [rbx + 0x20]
        mov rcx, 0x1122334455667788
        mov [rbx + 0x100], rcx
        hlt`,
        (m) => {
          m.mmio.insert(0xfee00000, 0x1000, {
            read: (off, size) => {
              log.push(`r${off.toString(16)}/${size}`);
              return 0x5a;
            },
            write: (off, size, v) => log.push(`w${off.toString(16)}/${size}=${v.toString(16)}`),
          }, 'test');
          // map 0xfee00000 with a 2 MiB page (PD entry 0x3f7 of a second PD)
          m.memory.write32(0x2000 + 3 * 8, 0x8003); // PDPT[3] -> PD at 0x8000
          m.memory.write32(0x8000 + 0x1f7 * 8, 0xfee00083);
        },
      );
      expect(r64(t, RAX)).toBe(0x5an);
      expect(log).toEqual(['w80/4=12', 'r20/4', 'w100/4=55667788', 'w104/4=11223344']);
    });
  });

  d(`${label}: interrupts and HLT`, () => {
    it('external interrupt taken when IF=1, HLT wakes', () => {
      const t = createTestMachine();
      t.memory.writeBytes(CODE_BASE, assemble(`
        sti
        hlt
        mov ebx, 1
        hlt`));
      enterLongMode(t);
      t.cpu.run(1000);
      expect(t.cpu.s.halted).toBe(true);
      expect(t.cpu.run(1000)).toBe(0); // nothing pending: stays halted
      t.irq.pending.push(0x30);
      t.cpu.run(1000);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 0x30));
      // return address in the frame: the instruction after HLT
      expect(t.memory.read32(Number(r64(t, RSP)))).toBe(CODE_BASE + 2);
    });

    it('takes an interrupt pending behind a hot cli/sti loop: the STI shadow covers one instruction', () => {
      // A kernel loop that enables interrupts for a moment on every iteration (spin_unlock_irq
      // then a check) livelocked: STI inside a translated block left the shadow set at the
      // block's end, every poll found it set, and the interrupt was never taken.
      const t = createTestMachine();
      t.memory.writeBytes(CODE_BASE, assemble(`
        xor ecx, ecx
        .l: cli
        inc ecx
        sti
        inc edx
        jmp .l`));
      enterLongMode(t);
      for (let i = 0; i < 20; i++) t.cpu.run(10_000); // hot: translated
      expect(r64(t, RCX)).toBeGreaterThan(10_000n);
      t.irq.pending.push(0x30);
      for (let i = 0; i < 20 && t.irq.pending.length; i++) t.cpu.run(10_000);
      expect(t.irq.pending.length).toBe(0);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 0x30));
    });

    it('an interrupt raised while IF=0 is taken one instruction after the STI of a hot block', () => {
      const t = createTestMachine();
      t.memory.writeBytes(CODE_BASE, assemble(`
        xor ecx, ecx             ; 2 bytes
        .l: cli                  ; CODE_BASE + 2
        inc ecx                  ; 2 bytes
        out 0x80, al             ; 2 bytes: the device raises the interrupt on the 20,000th
        sti                      ; CODE_BASE + 7
        mov ebx, ecx             ; the shadow
        mov edx, 5               ; CODE_BASE + 10: where the interrupt is taken
        jmp .l`));
      let outs = 0;
      t.pio.insert(0x80, 1, { read: () => 0, write: () => void (++outs === 20_000 && t.irq.pending.push(0x30)) }, 'raise');
      enterLongMode(t);
      for (let i = 0; i < 100 && r64(t, RAX) !== BigInt(HANDLER_MARK + 0x30); i++) t.cpu.run(10_000); // hot by then: STI inside a translated block
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 0x30));
      expect(t.memory.read32(Number(r64(t, RSP)))).toBe(CODE_BASE + 10);
      expect(r64(t, RBX)).toBe(20_000n);
    });

    it('MOV r/m, Sreg in the middle of straight code: the selector, zero-extended or 16 bits', () => {
      const t = run64(`
        mov ax, 0x10
        mov fs, ax
        mov r8, -1
        mov r9, -1
        mov r10, -1
        mov qword [0x170000], -1
        mov r8, ds               ; 64-bit: zero-extended
        mov r9d, cs              ; 32-bit: zero-extended
        mov r10w, fs             ; 16-bit: the rest stays
        mov [0x170000], ss       ; memory: 16 bits
        hlt`);
      const sel = t.cpu.s.segSel;
      expect(r64(t, R8)).toBe(BigInt(sel[3]!));
      expect(r64(t, R9)).toBe(BigInt(sel[1]!));
      expect(r64(t, R10)).toBe(0xffff_ffff_ffff_0000n | 0x10n);
      expect(t.memory.read64(0x170000)).toBe(0xffff_ffff_ffff_0000n | BigInt(sel[2]!));
    });

    it('MOV r, CRn in the middle of straight code (CR0, CR2, CR3, CR4, CR8)', () => {
      const t = run64(`
        mov rax, 0x12345678abc
        mov cr2, rax
        mov eax, 5
        mov cr8, rax
        mov r8, cr0
        mov r9, cr2
        mov r10, cr3
        mov r11, cr4
        mov r12, cr8
        add r9, 1
        hlt`);
      const s = t.cpu.s;
      expect(r64(t, R8)).toBe(BigInt(s.cr0 >>> 0));
      expect(r64(t, R9)).toBe(0x12345678abdn);
      expect(r64(t, R10)).toBe(BigInt(s.cr3));
      expect(r64(t, R11)).toBe(BigInt(s.cr4 >>> 0));
      expect(r64(t, R12)).toBe(5n);
    });

    it('SWAPGS, STD/CLD and CLI in the middle of straight code (a translated block goes on after them)', () => {
      const t = run64(`
        mov ecx, 0xc0000101      ; GS base
        mov eax, 0x150000
        xor edx, edx
        wrmsr
        mov ecx, 0xc0000102      ; KERNEL_GS_BASE
        mov eax, 0x160000
        wrmsr
        mov qword [0x150008], 11
        mov qword [0x160008], 22
        mov byte [0x170000], 0x5a
        mov byte [0x170001], 0xa5
        mov rsi, 0x170001
        mov rdi, 0x170003
        cli
        swapgs
        mov r8, gs:[8]
        std
        movsb                    ; [0x170003] = 0xa5, then both step down
        movsb                    ; [0x170002] = 0x5a
        cld
        swapgs
        mov r9, gs:[8]
        pushfq
        pop r10
        hlt`);
      expect(r64(t, R8)).toBe(22n);
      expect(r64(t, R9)).toBe(11n);
      expect(t.memory.read16(0x170002)).toBe(0xa55a);
      expect(r64(t, RDI)).toBe(0x170001n);
      expect(r64(t, R10) & 0x600n).toBe(0n); // IF and DF clear
    });

    it('no interrupt while IF=0', () => {
      const t = createTestMachine();
      t.memory.writeBytes(CODE_BASE, assemble(`
        cli
        mov ecx, 1000
        .l: loop .l
        mov ebx, 7
        hlt`));
      enterLongMode(t);
      t.irq.pending.push(0x30);
      t.cpu.run(100000);
      expect(r64(t, RBX)).toBe(7n);
      expect(t.irq.pending.length).toBe(1);
    });
  });

  d(`${label}: 32-bit protected mode and real mode`, () => {
    it('runs 32-bit code with 16-bit operand prefixes', () => {
      const t = run32(`
        mov eax, 0x12345678
        mov bx, 0xffff
        add bx, 1
        setc cl
        push eax
        pop edx
        mov esi, data
        mov edi, [esi]
        inc eax
        dec ebx
        hlt
        data: dd 0xcafebabe`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, RAX)).toBe(0x12345679n);
      expect(r64(t, RCX) & 0xffn).toBe(1n);
      expect(r64(t, RDX)).toBe(0x12345678n);
      expect(r64(t, RDI)).toBe(0xcafebaben);
      expect(r64(t, RBX)).toBe(0xffffffffn);
    });

    it('runs real-mode code with 16-bit addressing', () => {
      const t = createTestMachine();
      const code = assemble(`
        mov ax, 0x1234
        mov bx, 0x10
        mov si, 2
        mov [bx+si], ax
        mov cx, [bx+si]
        mov dx, [data]
        push ax
        pop di
        hlt
        data: dw 0xbeef`, 16, 0x100);
      t.memory.writeBytes(0x10000 + 0x100, code);
      enterReal(t, 0x1000, 0x100);
      t.cpu.run(1000);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, RCX)).toBe(0x1234n);
      expect(r64(t, RDX)).toBe(0xbeefn);
      expect(r64(t, RDI)).toBe(0x1234n);
      expect(t.memory.read16(0x10012)).toBe(0x1234);
    });
  });

  d(`${label}: system instructions`, () => {
    it('cpuid, rdmsr/wrmsr, mov cr, rdtsc', () => {
      const t = run64(`
        xor eax, eax
        cpuid
        mov r8d, ebx
        mov ecx, 0xc0000100     ; FS_BASE
        mov eax, 0x1000
        xor edx, edx
        wrmsr
        mov rax, [fs:0x10]
        mov r9, rax
        mov rax, cr0
        mov r10, rax
        rdtsc
        hlt`,
        (m) => m.memory.write32(0x1010, 0x777),
      );
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, R8)).not.toBe(0n);
      expect(r64(t, R9)).toBe(0x777n);
      expect(Number(r64(t, R10)) & 0x80000001).not.toBe(0);
    });

    it('syscall / sysret round trip', () => {
      const t = run64(`${SYSCALL_SETUP}
        mov ecx, 0xc0000084    ; SFMASK
        mov eax, 0x200
        xor edx, edx
        wrmsr
        lea rcx, [rel user]
        mov r11, 0x202
        o64 sysret
        user:
        mov ebx, 0x55
        syscall
        hlt
        entry:
        mov r12, rcx
        mov r13, r11
        hlt`,
        userPages,
      );
      expect(r64(t, RBX)).toBe(0x55n);
      expect(t.cpu.s.cpl).toBe(0);
      expect(Number(r64(t, R11)) & 0x200).toBe(0x200);
      expect(r64(t, R12)).toBeGreaterThan(BigInt(CODE_BASE));
    });

    it('SMSW at CPL 3 (allowed without CR4.UMIP); INVLPG of a non-canonical address does nothing', () => {
      const t = run64(`
        mov rax, 0x8000000000000000
        invlpg [rax]           ; a NOP, not #GP
        mov r14d, 1
        ${SYSCALL_SETUP}
        lea rcx, [rel user]
        mov r11, 0x2
        o64 sysret
        user:
        smsw ebx
        smsw [rel mswbuf]
        movzx r15d, word [rel mswbuf]
        syscall
        entry:
        hlt
        mswbuf: dw 0`,
        userPages,
      );
      expect(r64(t, R14)).toBe(1n);
      expect(Number(r64(t, RBX)) & 0xffff).toBe(0x33);
      expect(r64(t, R15)).toBe(0x33n);
      expect(t.cpu.s.cpl).toBe(0);
    });

    it('iretq to the same privilege level', () => {
      const t = run64(`
        mov rax, rsp
        push 0x10
        push rax
        pushfq
        push 0x08
        lea rax, [rel target]
        push rax
        iretq
        mov ebx, 1
        hlt
        target:
        mov ebx, 2
        hlt`);
      expect(r64(t, RBX)).toBe(2n);
      expect(r64(t, RSP)).toBe(BigInt(STACK_TOP));
    });

    it('lretq (far return) as used by head_64.S', () => {
      const t = run64(`
        push 0x08
        lea rax, [rel target]
        push rax
        o64 retf
        hlt
        target:
        mov ebx, 3
        hlt`);
      expect(r64(t, RBX)).toBe(3n);
    });

    it('lgdt/lidt/sgdt/sidt', () => {
      const t = run64(`
        sgdt [rel g]
        mov ax, [rel g]
        mov rbx, [rel g + 2]
        lidt [rel i]
        sidt [rel j]
        mov rcx, [rel j + 2]
        hlt
        align 8
        g: times 10 db 0
        i: dw 0xfff
           dq 0x4000
        j: times 10 db 0`);
      expect(r64(t, RAX) & 0xffffn).toBe(0x3fn);
      expect(r64(t, RBX)).toBe(0x500n);
      expect(r64(t, RCX)).toBe(0x4000n);
    });

    it('in/out reach the pio bus', () => {
      const writes: number[] = [];
      const t = run64(
        `
        mov dx, 0x3f8
        mov al, 'A'
        out dx, al
        in al, 0x60
        hlt`,
        (m) => {
          m.pio.insert(0x3f8, 8, { read: () => 0, write: (_o, _s, v) => writes.push(v) }, 'uart');
          m.pio.insert(0x60, 1, { read: () => 0x42, write: () => undefined }, 'kbd');
        },
      );
      expect(writes).toEqual([0x41]);
      expect(r64(t, RAX) & 0xffn).toBe(0x42n);
    });
  });
}
