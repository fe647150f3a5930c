/** The CPU core's directed tests, run by cpu.test.ts (interpreter) and wasm.test.ts (translated blocks); the system side is suite-system.test-helper.ts. */
import { describe, it, expect, beforeAll } from 'vitest';
import { run64, r64, hasNasm, assemble, RAX, RCX, RDX, RBX, RSP, RSI, RDI, R8, R9, R10, R11, R12 } from './asm.test-helper.js';
import { features } from '../features.js';
import { createTestMachine, testCpuDefaults, enterLongMode, enterReal, CODE_BASE, STACK_TOP, HANDLER_MARK, type TestMachine } from './test-machine.js';


/** Every directed test, with blocks translated after `jitThreshold` executions (Infinity: interpreted). */
/** EFER.SCE, STAR (SYSRET to user CS 0x28/SS 0x20, SYSCALL to CS 0x08) and LSTAR = `entry`. */
export const SYSCALL_SETUP = `
        mov ecx, 0xc0000080    ; EFER
        rdmsr
        or eax, 1              ; SCE
        wrmsr
        mov ecx, 0xc0000081    ; STAR: sysret base 0x18 (user cs = 0x28, ss = 0x20), syscall cs 0x08
        xor eax, eax
        mov edx, 0x00180008
        wrmsr
        mov ecx, 0xc0000082    ; LSTAR
        lea rax, [rel entry]
        mov rdx, rax
        shr rdx, 32
        wrmsr`;

/** Make the identity map user-accessible (U on every level), so code can run at CPL 3. */
export function userPages(m: TestMachine): void {
  m.memory.write32(0x1000, 0x2007);
  m.memory.write32(0x2000, 0x3007);
  for (let i = 0; i < 512; i++) m.memory.write32(0x3000 + i * 8, (i * 0x200000 + 0x87) >>> 0);
}

export function coreSuite(label: string, jitThreshold: number): void {
  const d = hasNasm ? describe : describe.skip;
  beforeAll(() => {
    testCpuDefaults.jitThreshold = jitThreshold;
  });
  const FLAGS = 0x8d5;

  d(`${label}: basics (64-bit)`, () => {
    it('runs mov/add and halts', () => {
      const t = run64(`
        mov rax, 0x123456789abcdef0
        mov rbx, 0x1111111111111111
        add rax, rbx
        mov ecx, -1
        mov r9d, 5
        mov r9b, 0x77
        hlt`);
      expect(t.cpu.s.halted).toBe(true);
      expect(r64(t, RAX)).toBe(0x23456789abcdf001n);
      expect(r64(t, RCX)).toBe(0xffffffffn);
      expect(r64(t, R9)).toBe(0x77n);
      expect(t.n).toBe(7);
    });

    it('8-bit high registers and REX byte registers', () => {
      const t = run64(`
        mov eax, 0x11223344
        mov ah, 0x99
        mov esi, 0xaabbccdd
        mov sil, 0x55
        mov bl, ah
        hlt`);
      expect(r64(t, RAX)).toBe(0x11229944n);
      expect(r64(t, RSI)).toBe(0xaabbcc55n);
      expect(r64(t, RBX) & 0xffn).toBe(0x99n);
    });

    it('add/sub/adc/sbb/cmp flags', () => {
      const t = run64(`
        mov rax, -1
        add rax, 1          ; CF ZF PF AF
        pushfq
        pop r8
        mov eax, 0x7fffffff
        add eax, 1          ; OF SF AF PF
        pushfq
        pop r9
        xor eax, eax
        sub eax, 1          ; CF SF AF PF
        pushfq
        pop r10
        stc
        mov rbx, 5
        adc rbx, 5          ; 11
        mov rcx, 5
        stc
        sbb rcx, 6          ; -2 CF
        pushfq
        pop r11
        hlt`);
      expect(Number(r64(t, R8)) & FLAGS).toBe(0x1 | 0x4 | 0x10 | 0x40);
      expect(Number(r64(t, R9)) & FLAGS).toBe(0x800 | 0x80 | 0x10 | 0x4);
      expect(Number(r64(t, R10)) & FLAGS).toBe(0x1 | 0x80 | 0x10 | 0x4);
      expect(r64(t, RBX)).toBe(11n);
      expect(r64(t, RCX)).toBe(0xfffffffffffffffen);
      expect(Number(r64(t, R11)) & 1).toBe(1);
    });

    it('64-bit add carry across halves and sub borrow', () => {
      const t = run64(`
        mov rax, 0x00000000ffffffff
        add rax, 1
        mov rbx, 0x0000000100000000
        sub rbx, 1
        mov rcx, 0x8000000000000000
        sub rcx, 1
        pushfq
        pop rdx
        hlt`);
      expect(r64(t, RAX)).toBe(0x100000000n);
      expect(r64(t, RBX)).toBe(0xffffffffn);
      expect(r64(t, RCX)).toBe(0x7fffffffffffffffn);
      expect(Number(r64(t, RDX)) & 0x801).toBe(0x800); // OF, no CF
    });

    it('sign-extended imm8 in 64-bit arithmetic (add rsp, -128)', () => {
      const t = run64(`
        mov rax, 0xffffffff82a03cf8
        add rax, -128
        mov rbx, 0xffffffff00000010
        sub rbx, -1
        mov rcx, 5
        and rcx, -2
        hlt`);
      expect(r64(t, RAX)).toBe(0xffffffff82a03c78n);
      expect(r64(t, RBX)).toBe(0xffffffff00000011n);
      expect(r64(t, RCX)).toBe(4n);
    });

    it('inc/dec preserve CF; neg/not', () => {
      const t = run64(`
        stc
        mov eax, 0xffffffff
        inc eax
        pushfq
        pop r8
        mov rbx, 0
        dec rbx
        mov rcx, 5
        neg rcx
        pushfq
        pop r9
        mov rdx, 0x0f0f
        not rdx
        hlt`);
      expect(r64(t, RAX)).toBe(0n);
      expect(Number(r64(t, R8)) & FLAGS).toBe(0x1 | 0x40 | 0x10 | 0x4);
      expect(r64(t, RBX)).toBe(0xffffffffffffffffn);
      expect(r64(t, RCX)).toBe(0xfffffffffffffffbn);
      expect(Number(r64(t, R9)) & 1).toBe(1);
      expect(r64(t, RDX)).toBe(0xfffffffffffff0f0n);
    });

    it('logic ops clear CF/OF, test', () => {
      const t = run64(`
        stc
        mov eax, 0xf0
        and eax, 0x0f
        pushfq
        pop r8
        mov rbx, 0x8000000000000000
        or rbx, 1
        test rbx, rbx
        pushfq
        pop r9
        xor ecx, ecx
        hlt`);
      expect(Number(r64(t, R8)) & FLAGS).toBe(0x40 | 0x4);
      expect(r64(t, RBX)).toBe(0x8000000000000001n);
      expect(Number(r64(t, R9)) & FLAGS).toBe(0x80);
    });

    it('memory operands, SIB, RIP-relative, movzx/movsx/movsxd', () => {
      const t = run64(`
        lea rsi, [rel data]
        mov rax, [rsi + 8]
        mov ecx, 2
        mov rbx, [rsi + rcx*8]
        movzx edx, byte [rel data + 3]
        movsx r8, byte [rel data + 3]
        movsxd r9, dword [rel data + 4]
        movsx r10d, word [rel data + 2]
        add qword [rel data], 0x10
        mov r11, [rel data]
        hlt
        align 8
        data: dq 0x8081828384858687, 0x1122334455667788, 0xdeadbeefcafebabe`);
      expect(r64(t, RAX)).toBe(0x1122334455667788n);
      expect(r64(t, RBX)).toBe(0xdeadbeefcafebaben);
      expect(r64(t, RDX)).toBe(0x84n);
      expect(r64(t, R8)).toBe(0xffffffffffffff84n);
      expect(r64(t, R9)).toBe(0xffffffff80818283n);
      expect(r64(t, R10)).toBe(0xffff8485n);
      expect(r64(t, R11)).toBe(0x8081828384858697n);
    });

    it('push/pop/call/ret and stack', () => {
      const t = run64(`
        mov rax, 0x1234
        push rax
        push 0x55
        pop rbx
        pop rcx
        call fn
        mov rdx, rsp
        hlt
        fn:
        mov r8, [rsp]
        ret`);
      expect(r64(t, RBX)).toBe(0x55n);
      expect(r64(t, RCX)).toBe(0x1234n);
      expect(r64(t, RDX)).toBe(BigInt(STACK_TOP));
      expect(r64(t, R8)).toBe(BigInt(CODE_BASE + 0xf));
    });

    it('loops with jcc, loop, jrcxz, setcc, cmov', () => {
      const t = run64(`
        xor eax, eax
        mov ecx, 10
        .l: add eax, ecx
        loop .l
        mov ebx, 0
        mov edx, 100
        .m: inc ebx
        cmp ebx, edx
        jl .m
        cmp eax, 55
        sete r8b
        setne r9b
        mov r10, 7
        mov r11, 9
        cmp r10, r11
        cmovb r10, r11
        mov r12, -1
        cmp r12, 0
        cmovg r12, r11
        jrcxz .z
        hlt
        .z: mov esi, 1
        hlt`);
      expect(r64(t, RAX)).toBe(55n);
      expect(r64(t, RBX)).toBe(100n);
      expect(r64(t, R8) & 0xffn).toBe(1n);
      expect(r64(t, R9) & 0xffn).toBe(0n);
      expect(r64(t, R10)).toBe(9n);
      expect(r64(t, R12)).toBe(0xffffffffffffffffn);
      expect(r64(t, RSI)).toBe(1n);
    });

    it('mul/imul/div/idiv in all sizes', () => {
      const t = run64(`
        mov rax, 0xffffffffffffffff
        mov rbx, 0xffffffffffffffff
        mul rbx                     ; rdx:rax = fffffffffffffffe_0000000000000001
        mov r8, rax
        mov r9, rdx
        mov eax, 0x80000000
        mov ecx, 3
        imul ecx                    ; edx:eax = -6442450944 ... eax*3 signed: 0x80000000 = -2^31
        mov r10, rax
        mov r11, rdx
        mov rax, 1000000007
        imul rax, rax, 1000000009
        mov r12, rax
        mov rdx, 1
        mov rax, 0
        mov rcx, 3
        div rcx                     ; 2^64 / 3
        mov rsi, rax
        mov rdi, rdx
        hlt`);
      expect(r64(t, R8)).toBe(1n);
      expect(r64(t, R9)).toBe(0xfffffffffffffffen);
      expect(r64(t, R10)).toBe(0x80000000n);
      expect(r64(t, R11)).toBe(0xfffffffen);
      expect(r64(t, R12)).toBe(1000000007n * 1000000009n);
      expect(r64(t, RSI)).toBe((1n << 64n) / 3n);
      expect(r64(t, RDI)).toBe((1n << 64n) % 3n);
    });

    it('32-bit div and idiv, 8/16-bit forms', () => {
      const t = run64(`
        mov edx, 7
        mov eax, 0x12345678
        mov ecx, 0x10000
        div ecx
        mov r8, rax
        mov r9, rdx
        mov eax, -100
        cdq
        mov ecx, 7
        idiv ecx
        mov r10, rax
        mov r11, rdx
        mov ax, 1000
        mov bl, 7
        div bl
        mov r12w, ax
        hlt`);
      const n = (7n << 32n) | 0x12345678n;
      expect(r64(t, R8)).toBe(n / 0x10000n);
      expect(r64(t, R9)).toBe(n % 0x10000n);
      expect(r64(t, R10)).toBe(0xfffffff2n); // -14
      expect(r64(t, R11)).toBe(0xfffffffen); // -2
      expect(r64(t, R12) & 0xffffn).toBe((6n << 8n) | 142n);
    });

    it('#DE on divide by zero goes to vector 0', () => {
      const t = run64(`
        xor ecx, ecx
        mov eax, 1
        div ecx
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 0));
      // frame: RIP of the faulting div
      const sp = Number(r64(t, RSP));
      expect(t.memory.read32(sp)).toBe(CODE_BASE + 7);
    });

    it('#UD on ud2 and #BP on int3, int n', () => {
      const a = run64('ud2\nhlt');
      expect(r64(a, RAX)).toBe(BigInt(HANDLER_MARK + 6));
      const b = run64('int3\nhlt');
      expect(r64(b, RAX)).toBe(BigInt(HANDLER_MARK + 3));
      expect(b.memory.read32(Number(r64(b, RSP)))).toBe(CODE_BASE + 1);
      const c = run64('int 0x80\nhlt');
      expect(r64(c, RAX)).toBe(BigInt(HANDLER_MARK + 0x80));
    });

    it('shifts and rotates', () => {
      const t = run64(`
        mov rax, 0x8000000000000001
        shl rax, 1          ; CF=1, result 2
        pushfq
        pop r8
        mov rbx, 0x8000000000000000
        sar rbx, 63
        mov ecx, 0x80000000
        shr ecx, 31
        mov edx, 0x12345678
        rol edx, 8
        mov rsi, 0x0123456789abcdef
        ror rsi, 4
        mov edi, 0x81
        mov cl, 1
        rcl dil, cl
        mov r9, 0x00000001ffffffff
        shl r9, 33
        mov r10d, 0x1234
        shld r10d, edx, 8
        mov r11, 0x1234
        mov r12, 0xf000000000000000
        shrd r11, r12, 4
        hlt`);
      expect(r64(t, RAX)).toBe(2n);
      expect(Number(r64(t, R8)) & 1).toBe(1);
      expect(r64(t, RBX)).toBe(0xffffffffffffffffn);
      expect(r64(t, RCX) & 0xffffff00n).toBe(0n);
      expect(r64(t, RDX)).toBe(0x34567812n);
      expect(r64(t, RSI)).toBe(0xf0123456789abcden);
      expect(r64(t, RDI) & 0xffn).toBe(0x03n); // CF=1 from ror (MSB of result) shifts in
      expect(r64(t, R9)).toBe(0xfffffffe00000000n);
      expect(r64(t, R10)).toBe(0x123434n);
      expect(r64(t, R11)).toBe(0x0000000000000123n);
    });

    it('bt/bts/btr/btc, bsf/bsr, bswap, xadd, cmpxchg, xchg', () => {
      const t = run64(`
        mov rax, 0x10
        bt rax, 4
        setc r8b
        bts rax, 40
        btr rax, 4
        mov rbx, 0x0000010000000000
        bsf rcx, rbx
        bsr rdx, rbx
        mov esi, 0x11223344
        bswap esi
        mov r9, 5
        mov r10, 7
        xadd r9, r10
        lea rdi, [rel mem]
        mov eax, 1
        mov r11d, 99
        lock cmpxchg [rdi], r11d
        mov r12d, [rdi]
        mov [rel bitbuf], dword 0
        mov r14d, 35
        bts [rel bitbuf], r14d
        mov r13d, [rel bitbuf + 4]
        xchg r13, r12
        hlt
        align 8
        mem: dd 1, 0
        bitbuf: dd 0, 0`);
      expect(r64(t, R8) & 0xffn).toBe(1n);
      expect(r64(t, RAX)).toBe(1n); // cmpxchg succeeded: rax unchanged
      expect(r64(t, RCX)).toBe(40n);
      expect(r64(t, RDX)).toBe(40n);
      expect(r64(t, RSI)).toBe(0x44332211n);
      expect(r64(t, R9)).toBe(12n);
      expect(r64(t, R10)).toBe(5n);
      expect(r64(t, R12)).toBe(8n); // bit 35 -> dword +4 bit 3
      expect(t.cpu.s.gpr[26]! >>> 0).toBe(99);
    });

    it('string ops: rep movsb/stosq/movsq, cmpsb, scasb, lodsb', () => {
      const t = run64(`
        lea rsi, [rel src]
        lea rdi, [rel dst]
        mov ecx, 13
        cld
        rep movsb
        lea rdi, [rel buf]
        mov rax, 0x0101010101010101
        mov ecx, 4
        rep stosq
        lea rsi, [rel src]
        lea rdi, [rel dst]
        mov ecx, 13
        repe cmpsb
        mov r8, rcx
        lea rdi, [rel src]
        mov al, 'W'
        mov ecx, 100
        repne scasb
        mov r9, rcx
        lea rsi, [rel src]
        lodsb
        mov r10, rax
        lea r15, [rel dst]
        hlt
        src: db 'Hello, World!'
        dst: times 16 db 0
        buf: times 40 db 0xff`);
      const dst = Number(r64(t, 15));
      expect(new TextDecoder().decode(t.memory.readBytes(dst, 13))).toBe('Hello, World!');
      expect(r64(t, R8)).toBe(0n);
      expect(r64(t, R9)).toBe(100n - 8n);
      expect(r64(t, R10) & 0xffn).toBe(0x48n);
      const buf = dst + 16;
      expect(t.memory.read32(buf + 28)).toBe(0x01010101);
      expect(t.memory.read8(buf + 32)).toBe(0xff);
    });

    it('overlapping rep movsb replicates a pattern (byte-wise forward semantics)', () => {
      const t = run64(`
        lea rsi, [rel buf]
        lea rdi, [rel buf + 1]
        mov ecx, 15
        rep movsb
        hlt
        buf: db 0xab
        times 20 db 0`);
      const buf = CODE_BASE + t.memory.readBytes(CODE_BASE, 100).indexOf(0xab, 10);
      expect([...t.memory.readBytes(buf, 17)]).toEqual([...new Array(16).fill(0xab), 0]);
    });

    it('std with rep movsq copies backwards', () => {
      const t = run64(`
        lea rsi, [rel src + 16]
        lea rdi, [rel dst + 16]
        mov ecx, 3
        std
        rep movsq
        cld
        mov rax, [rel dst]
        mov rbx, [rel dst + 16]
        hlt
        align 8
        src: dq 1, 2, 3
        dst: dq 0, 0, 0`);
      expect(r64(t, RAX)).toBe(1n);
      expect(r64(t, RBX)).toBe(3n);
    });

    it('rep stosb and rep movsb of 7 and of 100 bytes (short counts run inline in translated blocks, long ones do not)', () => {
      const t = run64(`
        lea rdi, [rel buf]
        mov al, 0x5a
        mov ecx, 100
        rep stosb
        mov r8, rdi
        mov al, 0x11
        mov ecx, 7
        rep stosb
        lea rsi, [rel buf]
        lea rdi, [rel dst]
        mov ecx, 107
        rep movsb
        mov r9, rcx
        lea rsi, [rel buf + 100]
        lea rdi, [rel dst + 200]
        mov ecx, 7
        rep movsb
        lea r15, [rel buf]
        hlt
        buf: times 110 db 0
        dst: times 210 db 0`);
      const buf = Number(r64(t, 15));
      expect(Number(r64(t, R8)) - buf).toBe(100);
      expect(r64(t, R9)).toBe(0n);
      expect([...t.memory.readBytes(buf, 108)]).toEqual([...new Array(100).fill(0x5a), ...new Array(7).fill(0x11), 0]);
      expect([...t.memory.readBytes(buf + 110, 108)]).toEqual([...new Array(100).fill(0x5a), ...new Array(7).fill(0x11), 0]);
      expect([...t.memory.readBytes(buf + 110 + 200, 8)]).toEqual([...new Array(7).fill(0x11), 0]);
    });

    it('rep movsb that faults midway leaves RCX, RSI and RDI at the faulting byte and RIP at the instruction', () => {
      const t = run64(`
        lea r8, [rel copy]
        lea r9, [rel src]
        mov rsi, r9
        mov rdi, 0x3ffffff8     ; the last 8 bytes before an unmapped page
        mov ecx, 20
        cld
        jmp r8                  ; the copy starts a block of its own
      copy:
        rep movsb
        hlt
        src: times 20 db 0x77`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(r64(t, 1)).toBe(12n); // RCX
      expect(r64(t, 6)).toBe(r64(t, R9) + 8n); // RSI: past the 8 bytes copied
      expect(r64(t, 7)).toBe(0x40000000n); // RDI
      expect(t.memory.read32(Number(r64(t, RSP)) + 8)).toBe(Number(r64(t, R8))); // the frame's RIP
    });

    it('a long rep movsb over code already run sees the new code (the bulk copy leaves pages with code to the interpreter)', () => {
      const t = run64(`
        mov byte [rel scratch], 0 ; the code page in the write TLB
        call patch
        mov r8, rax
        lea rsi, [rel newcode]
        lea rdi, [rel patch]
        mov ecx, 48
        rep movsb
        call patch
        mov r9, rax
        hlt
      newcode:
        mov eax, 2
        ret
        times 42 nop
      patch:
        mov eax, 1
        ret
        times 42 nop
        times 128 db 0
      scratch: db 0`);
      expect(r64(t, R8)).toBe(1n);
      expect(r64(t, R9)).toBe(2n);
    });

    it('a long rep stosq that reaches an unmapped page stops there with RCX and RDI counting what it stored', () => {
      const t = run64(`
        mov qword [0x3000 + 8 * 8], 0 ; the 2 MiB page at 16 MiB not present
        mov rax, cr3
        mov cr3, rax
        lea r8, [rel fill]
        mov rdi, 0xffffc0       ; 64 bytes before it
        mov qword [rdi], 1      ; that page in the write TLB
        mov rax, 0x4242424242424242
        mov ecx, 40
        cld
        jmp r8
      fill:
        rep stosq
        hlt`);
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(r64(t, 1)).toBe(32n); // RCX: 8 of 40 stored
      expect(r64(t, 7)).toBe(0x1000000n); // RDI
      expect(t.memory.read64(0xffffc0)).toBe(0x4242424242424242n);
      expect(t.memory.read64(0xfffff8)).toBe(0x4242424242424242n);
      expect(t.memory.read64(0x1000000)).toBe(0n);
    });

    it('enter/leave, lahf/sahf, cbw family, cqo', () => {
      const t = run64(`
        mov rbp, 0x1234
        enter 32, 0
        mov rax, rsp
        leave
        mov rbx, rbp
        mov eax, -5
        cdqe
        cqo
        mov r8, rdx
        mov ah, 0xd5
        sahf
        lahf
        mov r9, rax
        hlt`);
      expect(r64(t, RBX)).toBe(0x1234n);
      expect(r64(t, RAX) & 0xffffffff00000000n).toBe(0xffffffff00000000n);
      expect(r64(t, R8)).toBe(0xffffffffffffffffn);
      expect((r64(t, R9) >> 8n) & 0xffn).toBe(0xd7n);
    });

    it('pushf/popf round trip and DF', () => {
      const t = run64(`
        std
        stc
        pushfq
        pop rax
        cld
        clc
        push rax
        popfq
        pushfq
        pop rbx
        hlt`);
      expect(Number(r64(t, RAX)) & 0x401).toBe(0x401);
      expect(Number(r64(t, RBX)) & 0x401).toBe(0x401);
    });

    it('self-modifying code is seen', () => {
      const t = run64(`
        lea rdi, [rel patch]
        mov byte [rdi + 1], 42
        patch: mov eax, 1
        hlt`);
      expect(r64(t, RAX)).toBe(42n);
    });

    it('direct jumps, calls and conditional branches inside one page (traces)', () => {
      const t = run64(`
        xor eax, eax
        xor esi, esi
        mov ecx, 30
        .l: jmp .a
        .b: add eax, 2
        call f
        jmp .c
        .a: add eax, 1
        jmp .b
        .c: test ecx, 1
        jz .even
        add esi, 1
        .even: dec ecx
        jnz .l
        hlt
        f: add eax, 100
        ret`);
      expect(r64(t, RAX)).toBe(3090n);
      expect(r64(t, RSI)).toBe(15n);
      expect(r64(t, RSP)).toBe(BigInt(STACK_TOP));
      expect(t.n).toBe(379);
    });

    it('constant shifts and rotates whose flags are overwritten, bswap (32 and 64 bits)', () => {
      const v = 0x8badf00dfeedc0den;
      const lines: string[] = [];
      const expected: bigint[] = [];
      const M64 = (1n << 64n) - 1n;
      const sar64 = (x: bigint, n: bigint): bigint => (BigInt.asIntN(64, x) >> n) & M64;
      for (const n of [1, 5, 31, 32, 33, 63]) {
        lines.push(`mov rax, ${v}`, `shl rax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
        lines.push(`mov rax, ${v}`, `shr rax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
        lines.push(`mov rax, ${v}`, `sar rax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
        expected.push((v << BigInt(n)) & M64, v >> BigInt(n), sar64(v, BigInt(n)));
        if (n < 32) {
          lines.push(`mov eax, 0x${(v & 0xffffffffn).toString(16)}`, `shl eax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
          lines.push(`mov eax, 0x${(v & 0xffffffffn).toString(16)}`, `sar eax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
          const x = v & 0xffffffffn;
          expected.push((x << BigInt(n)) & 0xffffffffn, BigInt((Number(x) | 0) >> n) & 0xffffffffn);
        }
      }
      const rol = (x: bigint, k: bigint, bits: bigint): bigint => {
        const m = (1n << bits) - 1n;
        return ((x << k) | (x >> (bits - k))) & m;
      };
      for (const n of [1, 7, 31, 32, 33, 63]) {
        lines.push(`mov rax, ${v}`, `rol rax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
        lines.push(`mov rax, ${v}`, `ror rax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
        expected.push(rol(v, BigInt(n), 64n), rol(v, 64n - BigInt(n), 64n));
        if (n < 32) {
          const x = v & 0xffffffffn;
          lines.push(`mov rax, ${v}`, `rol eax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
          lines.push(`mov rax, ${v}`, `ror eax, ${n}`, 'xor ecx, ecx', 'add r8, rax');
          expected.push(rol(x, BigInt(n), 32n), rol(x, 32n - BigInt(n), 32n));
        }
      }
      lines.push(`mov rax, ${v}`, 'bswap rax', 'add r8, rax', `mov rax, ${v}`, 'bswap eax', 'add r8, rax');
      const bs = (x: bigint, bytes: number): bigint => {
        let r = 0n;
        for (let i = 0; i < bytes; i++) r = (r << 8n) | ((x >> BigInt(8 * i)) & 0xffn);
        return r;
      };
      expected.push(bs(v, 8), bs(v & 0xffffffffn, 4));
      const t = run64(`xor r8d, r8d\n${lines.join('\n')}\nhlt`);
      expect(r64(t, R8)).toBe(expected.reduce((a, b) => (a + b) & M64, 0n));
    });

    it('flags pass through inc, shift by CL = 0 and rotates to a later reader', () => {
      const t = run64(`
        mov eax, 1
        mov ecx, -1
        mov edx, 5
        cmp eax, 2        ; CF = 1
        inc ecx           ; ZF = 1, CF kept
        shl edx, cl       ; count 0: no flag changes
        setc r8b
        setz r9b
        mov ecx, 1
        cmp ecx, 0        ; ZF = 0, SF = 0
        ror edx, 1        ; CF = OF = bit moved; ZF/SF kept
        setz r10b
        sets r11b
        hlt`);
      expect(r64(t, R8) & 0xffn).toBe(1n);
      expect(r64(t, R9) & 0xffn).toBe(1n);
      expect(r64(t, R10) & 0xffn).toBe(0n);
      expect(r64(t, R11) & 0xffn).toBe(0n);
      expect(r64(t, RDX)).toBe(0x80000002n);
    });

    it('calls and returns inside one trace, and a return to a changed address', () => {
      const t = run64(`
        xor eax, eax
        xor esi, esi
        mov ecx, 5
        .l: call f
        add eax, 1
        call g
        inc esi            ; skipped: g returns 2 bytes further
        dec ecx
        jnz .l
        hlt
        f: add eax, 10
        ret
        g: add qword [rsp], 2
        ret`);
      expect(r64(t, RAX)).toBe(55n);
      expect(r64(t, RSI)).toBe(0n);
      expect(r64(t, RSP)).toBe(BigInt(STACK_TOP));
      expect(t.n).toBe(3 + 9 * 5 + 1);
    });

    it('a long self-loop retires exactly its instructions', () => {
      const t = run64(`
        xor eax, eax
        mov ecx, 10000
        .l: add rax, 3
        dec ecx
        jnz .l
        hlt`);
      expect(r64(t, RAX)).toBe(30000n);
      expect(t.n).toBe(2 + 3 * 10000 + 1);
    });

    it('self-modifying code after a followed jump is seen', () => {
      const t = run64(`
        lea rdi, [rel patch]
        xor esi, esi
        mov ecx, 3
        .l: mov byte [rdi + 1], cl
        jmp .x
        .x:
        patch: mov eax, 1
        add esi, eax
        dec ecx
        jnz .l
        hlt`);
      expect(r64(t, RSI)).toBe(6n);
    });

    it('code at the same linear address on a remapped page runs the new bytes', () => {
      const t = run64(`
        mov ebx, 0x200000
        xor esi, esi
        xor edi, edi
        mov ecx, 20
        .a: call rbx
        add esi, eax
        loop .a
        mov dword [0x3008], 0x400083   ; remap 2 MiB -> 4 MiB
        invlpg [0x200000]
        mov rax, [0x200000]            ; refill the TLB entry with the new page first
        mov ecx, 20
        .b: call rbx
        add edi, eax
        loop .b
        mov dword [0x3008], 0x200083   ; and back, through a CR3 reload
        mov rdx, cr3
        mov cr3, rdx
        call rbx
        mov ebp, eax
        hlt`,
        (m) => {
          m.memory.writeBytes(0x200000, new Uint8Array([0xb8, 1, 0, 0, 0, 0xc3])); // mov eax, 1; ret
          m.memory.writeBytes(0x400000, new Uint8Array([0xb8, 2, 0, 0, 0, 0xc3])); // mov eax, 2; ret
        },
      );
      expect(r64(t, RSI)).toBe(20n);
      expect(r64(t, RDI)).toBe(40n);
      expect(r64(t, 5)).toBe(1n);
    });
  });

  d(`${label}: optional features`, () => {
    it('cmpxchg16b (when advertised) and #UD when not', () => {
      const saved = features.cx16;
      try {
        features.cx16 = true;
        const t = run64(`
          lea rdi, [rel m]
          mov rax, 1
          mov rdx, 2
          mov rbx, 0x33
          mov rcx, 0x44
          cmpxchg16b [rdi]
          setz r8b
          mov r9, [rdi]
          mov r10, [rdi + 8]
          cmpxchg16b [rdi]      ; now fails: loads rdx:rax
          setz r11b
          hlt
          align 16
          m: dq 1, 2`);
        expect(r64(t, R8) & 0xffn).toBe(1n);
        expect(r64(t, R9)).toBe(0x33n);
        expect(r64(t, R10)).toBe(0x44n);
        expect(r64(t, R11) & 0xffn).toBe(0n);
        expect(r64(t, RAX)).toBe(0x33n);
        expect(r64(t, RDX)).toBe(0x44n);
        features.cx16 = false;
        const u = run64('lea rdi, [rel m]\ncmpxchg16b [rdi]\nhlt\nalign 16\nm: dq 0, 0');
        expect(r64(u, RAX)).toBe(BigInt(HANDLER_MARK + 6));
      } finally {
        features.cx16 = saved;
      }
    });

    it('popcnt (when advertised)', () => {
      const saved = features.popcnt;
      try {
        features.popcnt = true;
        const t = run64(`
          mov rax, 0xf0f0000000000001
          popcnt rbx, rax
          xor ecx, ecx
          popcnt rdx, rcx
          pushfq
          pop r8
          hlt`);
        expect(r64(t, RBX)).toBe(9n);
        expect(r64(t, RDX)).toBe(0n);
        expect(Number(r64(t, R8)) & FLAGS).toBe(0x40);
      } finally {
        features.popcnt = saved;
      }
    });
  });

  d(`${label}: decoder coverage`, () => {
    it('r12/r13 base encodings and no-base SIB', () => {
      const t = run64(`
        lea r12, [rel data]
        mov r13, r12
        mov rax, [r12]
        mov rbx, [r13 + 8]
        mov ecx, 1
        mov rdx, [rcx*8 + data - 8 + 8]
        hlt
        align 8
        data: dq 11, 22`, undefined);
      expect(r64(t, RAX)).toBe(11n);
      expect(r64(t, RBX)).toBe(22n);
      expect(r64(t, RDX)).toBe(22n);
    });

    it('imm64 mov and moffs', () => {
      const t = run64(`
        mov rax, 0x1122334455667788
        mov [qword 0x9000], rax
        mov rbx, [0x9000]
        mov eax, 0
        mov eax, [qword 0x9004]
        hlt`);
      expect(r64(t, RBX)).toBe(0x1122334455667788n);
      expect(r64(t, RAX)).toBe(0x11223344n);
    });

    it('group 3 test with RIP-relative operand and immediate', () => {
      const t = run64(`
        test dword [rel v], 0x100
        setnz al
        test byte [rel v], 1
        setnz bl
        hlt
        v: dd 0x100`);
      expect(r64(t, RAX) & 0xffn).toBe(1n);
      expect(r64(t, RBX) & 0xffn).toBe(0n);
    });
  });

  d(`${label}: speed`, () => {
    it('executes a simple loop (reports instructions per second)', () => {
      const t = createTestMachine();
      t.memory.writeBytes(CODE_BASE, assemble(`
        mov ecx, 3000000
        xor eax, eax
        lea rsi, [rel buf]
        .l: add eax, ecx
        mov [rsi], eax
        dec ecx
        jnz .l
        hlt
        align 4096
        buf: dq 0`));
      enterLongMode(t);
      const t0 = performance.now();
      const n = t.cpu.run(100_000_000);
      const ms = performance.now() - t0;
      expect(t.cpu.s.halted).toBe(true);
      console.log(`core loop: ${n} instructions in ${ms.toFixed(0)} ms = ${(n / ms / 1000).toFixed(1)} M/s`);
      expect(n).toBe(3 + 4 * 3000000 + 1);
    });
  });

  void R12;
  void r64;
  void enterReal;

}
