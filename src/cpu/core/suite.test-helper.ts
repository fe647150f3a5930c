/** The CPU core's directed tests, run by cpu.test.ts (interpreter) and jit.test.ts (translated blocks). */
import { describe, it, expect, beforeAll } from 'vitest';
import { run64, run32, r64, hasNasm, assemble, RAX, RCX, RDX, RBX, RSP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 } from './asm.test-helper.js';
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
        (m) => {
          m.memory.write32(0x3000 + 8, 0x200081); // 2 MiB page at 2 MiB: present, not writable
          m.cpu.s.cr0 |= 0x10000; // WP
        },
      );
      expect(r64(t, RAX)).toBe(BigInt(HANDLER_MARK + 14));
      expect(t.memory.read32(Number(r64(t, RSP)))).toBe(3);
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
