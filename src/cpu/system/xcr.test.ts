/**
 * XSAVE as the core sees it: CPUID (leaf 1's XSAVE/OSXSAVE bits, leaf 0xD), CR4.OSXSAVE,
 * XGETBV/XSETBV and their faults, and the #UD/#NM rules of XSAVE/XRSTOR/XSAVEOPT — real code on
 * the core's Cpu (the image itself is tested in src/cpu/fpu/xsave.test.ts). Skipped without nasm.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { features } from '../features.js';
import { Cr4, Mode } from '../state.js';
import { CpuFault } from '../system-api.js';
import { CODE_BASE, HANDLER_MARK, createTestMachine, enterLongMode, enterProtected32, type TestMachine } from '../core/test-machine.js';
import { assemble, hasNasm, r64, RAX, R8, R9, R10, R11, R12, R13 } from '../core/asm.test-helper.js';
import { simdUnit } from '../fpu/index.js';
import { cpuidLeaf } from './cpuid.js';
import { TestHost } from './testhost.js';
import { xsetbv } from './xcr.js';

const UD = HANDLER_MARK + 6;
const NM = HANDLER_MARK + 7;
const GP = HANDLER_MARK + 13;
const ENABLE = 'mov rax, cr4\nbts eax, 18\nmov cr4, rax\n';
const BUF = 0x200000;

/** Assemble, enter 64-bit (or 32-bit protected) mode on a machine with the SIMD unit, run until HLT. */
function run(src: string, bits: 32 | 64, setup?: (t: TestMachine) => void, jitThreshold?: number): TestMachine {
  const t = createTestMachine({ simd: simdUnit, jitThreshold });
  t.memory.writeBytes(CODE_BASE, assemble(src, bits));
  if (bits === 64) enterLongMode(t);
  else enterProtected32(t);
  setup?.(t);
  t.cpu.run(1_000_000);
  return t;
}
const run64 = (src: string, setup?: (t: TestMachine) => void): TestMachine => run(src, 64, setup);
const run32 = (src: string): TestMachine => run(src, 32);

function leaf(s: TestHost['s'], l: number, sub = 0): number[] {
  const out = new Uint32Array(4);
  cpuidLeaf(s, l, sub, out);
  return Array.from(out);
}

const saved = features.xsave;
afterEach(() => {
  features.xsave = saved;
});

describe('CPUID for XSAVE', () => {
  it('leaf 1: XSAVE, and OSXSAVE following CR4.OSXSAVE', () => {
    const h = new TestHost();
    expect((leaf(h.s, 1)[2]! >>> 26) & 3).toBe(1);
    h.s.cr4 |= Cr4.OSXSAVE;
    expect((leaf(h.s, 1)[2]! >>> 26) & 3).toBe(3);
    features.xsave = false;
    expect((leaf(h.s, 1)[2]! >>> 26) & 3).toBe(0);
    expect(leaf(h.s, 0xd)).toEqual([0, 0, 0, 0]);
  });

  it('leaf 0xD: x87 and SSE in 576 bytes; XSAVEOPT and XGETBV(1); nothing beyond', () => {
    const h = new TestHost();
    expect(leaf(h.s, 0)[0]).toBeGreaterThanOrEqual(0xd);
    expect(leaf(h.s, 0xd, 0)).toEqual([3, 576, 576, 0]);
    expect(leaf(h.s, 0xd, 1)).toEqual([0b101, 0, 0, 0]);
    for (const sub of [2, 3, 62, 63]) expect(leaf(h.s, 0xd, sub)).toEqual([0, 0, 0, 0]);
  });
});

describe.skipIf(!hasNasm)('XGETBV / XSETBV', () => {
  it('#UD while CR4.OSXSAVE is clear', () => {
    expect(r64(run64('xor ecx, ecx\nxgetbv\nmov eax, 1\nhlt'), RAX)).toBe(BigInt(UD));
    expect(r64(run64('xor ecx, ecx\nmov eax, 3\nxor edx, edx\nxsetbv\nmov eax, 1\nhlt'), RAX)).toBe(BigInt(UD));
  });

  it('CR4.OSXSAVE is writable; XCR0 starts as 1, XSETBV sets 3; XGETBV(1) reads XCR0 AND XINUSE', () => {
    const t = run64(`${ENABLE}xor ecx, ecx\nxgetbv\nmov r8, rax\nmov r9, rdx
mov eax, 3\nxor edx, edx\nxsetbv\nmov rax, -1\nmov rdx, -1\nxgetbv\nmov r10, rax\nmov r11, rdx
mov ecx, 1\nxgetbv\nmov r12, rax\nmov eax, 0xd\nxor ecx, ecx\ncpuid\nmov r13, rbx\nmov eax, 0\nhlt`);
    expect(r64(t, RAX)).toBe(0n);
    expect([r64(t, R8), r64(t, R9), r64(t, R10), r64(t, R11), r64(t, R12), r64(t, R13)]).toEqual([1n, 0n, 3n, 0n, 3n, 576n]);
    expect(t.cpu.s.xcr0).toBe(3);
  });

  it('XGETBV: #GP(0) for ECX > 1; XSETBV: #GP(0) for ECX != 0, x87 clear, unsupported bits', () => {
    expect(r64(run64(`${ENABLE}mov ecx, 2\nxgetbv\nmov eax, 1\nhlt`), RAX)).toBe(BigInt(GP));
    for (const [ecx, eax, edx] of [[1, 3, 0], [0, 2, 0], [0, 0, 0], [0, 7, 0], [0, 5, 0], [0, 0x203, 0], [0, 3, 1], [0, 3, 0x80000000]]) {
      const t = run64(`${ENABLE}mov ecx, ${ecx}\nmov eax, ${eax}\nmov edx, ${edx}\nxsetbv\nmov eax, 1\nhlt`);
      expect(r64(t, RAX), `ecx=${ecx} edx:eax=${edx}:${eax}`).toBe(BigInt(GP));
      expect(t.cpu.s.xcr0).toBe(1);
    }
    // XCR0 = 1 (x87 only) is allowed
    const t = run64(`${ENABLE}mov eax, 3\nxor edx, edx\nxor ecx, ecx\nxsetbv\nmov eax, 1\nxsetbv\nmov eax, 0\nhlt`);
    expect(r64(t, RAX)).toBe(0n);
    expect(t.cpu.s.xcr0).toBe(1);
  });

  it('XSETBV: #GP(0) outside CPL 0 and in V86 mode', () => {
    const h = new TestHost();
    h.s.cr4 |= Cr4.OSXSAVE;
    h.s.gpr[0] = 3;
    for (const [mode, cpl] of [[Mode.Long64, 3], [Mode.Protected32, 1], [Mode.V86, 3]] as const) {
      h.s.mode = mode;
      h.s.cpl = cpl;
      expect(() => xsetbv(h)).toThrow(CpuFault);
      expect(h.s.xcr0).toBe(1);
    }
    h.s.mode = Mode.Real;
    h.s.cpl = 0;
    xsetbv(h);
    expect(h.s.xcr0).toBe(3);
  });

  it('LOCK and 66/F3 prefixes: #UD', () => {
    for (const p of ['db 0xf0', 'db 0x66', 'db 0xf3']) {
      expect(r64(run64(`${ENABLE}xor ecx, ecx\n${p}\nxgetbv\nmov eax, 1\nhlt`), RAX), p).toBe(BigInt(UD));
    }
  });

  it('with the feature off: CR4.OSXSAVE is reserved (#GP), XGETBV #UD', () => {
    features.xsave = false;
    expect(r64(run64(`${ENABLE}mov eax, 1\nhlt`), RAX)).toBe(BigInt(GP));
    expect(r64(run64('xor ecx, ecx\nxgetbv\nmov eax, 1\nhlt'), RAX)).toBe(BigInt(UD));
  });
});

describe.skipIf(!hasNasm)('XSAVE, XRSTOR, XSAVEOPT through the core', () => {
  const setup = `${ENABLE}mov eax, 3\nxor edx, edx\nxor ecx, ecx\nxsetbv\nmov rbx, ${BUF}\n`;

  it('64-bit: XSAVE64 stores x87 and SSE state and the header; XRSTOR64 brings them back', () => {
    const t = run64(`${setup}fninit\nfld1\nmov rax, 0x1122334455667788\nmovq xmm15, rax
mov eax, 3\nxor edx, edx\nxsave64 [rbx]\nfninit\npxor xmm15, xmm15\nxrstor64 [rbx]
movq rcx, xmm15\nfstp qword [rbx + 0x400]\nmov r8, [rbx + 0x400]\nxsaveopt [rbx + 0x800]\nmov eax, 0\nhlt`);
    expect(r64(t, RAX)).toBe(0n);
    expect(r64(t, 1)).toBe(0x1122334455667788n);
    expect(r64(t, R8)).toBe(0x3ff0000000000000n);
    expect(t.memory.read32(BUF + 512)).toBe(3);
    expect(t.memory.read32(BUF + 160 + 16 * 15)).toBe(0x55667788);
    expect(t.memory.read32(BUF + 0x800 + 512)).toBe(3);
    expect(t.memory.read32(BUF + 0x800 + 24)).toBe(0x1f80);
  });

  it('32-bit protected mode: XSAVE and XRSTOR with the 32-bit FIP/FDP format', () => {
    const t = run32(`mov eax, cr4\nbts eax, 18\nmov cr4, eax\nmov eax, 3\nxor edx, edx\nxor ecx, ecx\nxsetbv
mov ebx, ${BUF}\nfninit\nfld1\nxsave [ebx]\nfninit\nxrstor [ebx]\nfstp qword [ebx + 0x400]\nmov eax, [ebx + 0x404]\nhlt`);
    expect(r64(t, RAX)).toBe(0x3ff00000n);
    expect(t.memory.read32(BUF + 512)).toBe(3);
  });

  it('#UD while CR4.OSXSAVE is clear or with a 66 (but for XSAVEOPT: CLWB)/F2/F3/LOCK prefix; #NM with CR0.TS; CR0.EM does not matter', () => {
    for (const op of ['xsave [rbx]', 'xrstor [rbx]', 'xsaveopt [rbx]']) {
      expect(r64(run64(`mov rbx, ${BUF}\n${op}\nmov eax, 1\nhlt`), RAX), op).toBe(BigInt(UD));
      for (const p of ['db 0x66', 'db 0xf3', 'db 0xf2', 'db 0xf0']) {
        if (p === 'db 0x66' && op.startsWith('xsaveopt')) continue; // 66 0F AE /6 (memory) is CLWB
        expect(r64(run64(`${setup}${p}\n${op}\nmov eax, 1\nhlt`), RAX), `${p} ${op}`).toBe(BigInt(UD));
      }
      expect(r64(run64(`${setup}mov rax, cr0\nbts eax, 3\nmov cr0, rax\nmov eax, 3\n${op}\nmov eax, 1\nhlt`), RAX), op).toBe(BigInt(NM));
      const em = run64(`${setup}mov eax, 3\nxsave [rbx]\nmov rax, cr0\nbts eax, 2\nmov cr0, rax\nmov eax, 3\n${op}\nmov eax, 1\nhlt`);
      expect(r64(em, RAX), `EM ${op}`).toBe(1n);
    }
  });

  it('#GP(0) for an area not 64-byte aligned', () => {
    for (const op of ['xsave [rbx + 16]', 'xrstor [rbx + 32]', 'xsaveopt [rbx + 48]']) {
      // R15 = 1 shows the fault came from the instruction, not from the setup
      const t = run64(`${setup}mov eax, 3\nmov r15d, 1\n${op}\nmov eax, 1\nhlt`);
      expect([r64(t, RAX), r64(t, 15)], op).toEqual([BigInt(GP), 1n]);
    }
  });

  it.each([['interpreted', undefined], ['translated', 1]] as const)('an XSAVE that rewrites a function already run is seen (%s)', (_name, jit) => {
    // XMM0 = mov eax, 2; ret. XSAVE with RFBM = 2 stores it at area + 160, where f is
    const t = run(`${setup}mov ecx, 50\nloop1: call f\nadd r8, rax\ndec ecx\njnz loop1
mov rax, 0xc3000000_02b8\nmovq xmm0, rax\nxor edx, edx\nmov ecx, 50
loop2: call f\nadd r9, rax\ncmp ecx, 25\njne skip\nmov eax, 2\nxsave [area]\nskip: dec ecx\njnz loop2\nhlt
align 64\narea: times 160 db 0\nf: mov eax, 1\nret\ntimes 576 db 0`, 64, undefined, jit);
    expect([r64(t, R8), r64(t, R9)]).toEqual([50n, 26n + 2n * 24n]); // 26 calls before the XSAVE, 24 after
    if (jit !== undefined) expect(t.cpu.wasm!.modulesCompiled).toBeGreaterThan(0);
  });

  it('with the feature off: #UD', () => {
    features.xsave = false;
    const t = run64(`mov rbx, ${BUF}\nxsave [rbx]\nmov eax, 1\nhlt`, (m) => {
      m.cpu.s.cr4 |= Cr4.OSXSAVE; // as if a snapshot had it: the feature switch still wins
    });
    expect(r64(t, RAX)).toBe(BigInt(UD));
  });
});
