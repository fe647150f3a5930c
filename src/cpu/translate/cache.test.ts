/**
 * The block cache's links against paging changes: a link into translated code lasts until the
 * mapping of that code's page may have changed (INVLPG of it, a TLB flush), and no longer; an
 * INVLPG of a page without translated code must leave every link in place (the kernel does
 * hundreds per fork, exec and exit); a link to a successor on the block's own page holds across
 * TLB epochs (the block's entry checked that page).
 */
import { describe, it, expect } from 'vitest';
import { assemble, hasNasm } from '../core/asm.test-helper.js';
import { createTestMachine, enterLongMode, CODE_BASE, type TestMachine } from '../core/test-machine.js';

/**
 * Code that calls functions f0..f(n-1) through a table, `rounds` times over, with `perRound`
 * at the top of each round, then runs `after`; `fns` are the functions (labels f0...).
 */
function tableCalls(n: number, rounds: number, fns: string, after: string, perRound = ''): string {
  return `
  xor eax, eax
  mov r8d, ${rounds}
round:
  ${perRound}
  xor ecx, ecx
next:
  call [table + rcx * 8]
  inc ecx
  cmp ecx, ${n}
  jne next
  dec r8d
  jnz round
${after}
align 8
table: dq ${Array.from({ length: n }, (_v, i) => `f${i}`).join(', ')}
${fns}
`;
}

/** Page table for 0x400000..0x5fffff in 4 KiB pages (identity) at PT. */
const PT = 0x9000;
const FN = 0x401000;
const FN_A = 0x500000; // mov eax, 1; ret
const FN_B = 0x501000; // mov eax, 2; ret

/** 40 calls of the function at FN (RBX sums what it returns), then HLT. */
const CALL_FN_40 = `
  mov ecx, 40
a: call ${FN}
  add ebx, eax
  dec ecx
  jnz a
  hlt`;

function machine(src: string, shared = false): TestMachine {
  const t = createTestMachine({ jitThreshold: 1, shared });
  enterLongMode(t);
  const m = t.memory;
  for (let i = 0; i < 512; i++) {
    const phys = i === 1 ? FN_A : 0x400000 + i * 0x1000;
    m.write32(PT + i * 8, phys + 3);
    m.write32(PT + i * 8 + 4, 0);
  }
  m.write32(0x3000 + 2 * 8, PT + 3); // PD entry of 0x400000: the page table instead of a 2 MiB page
  m.writeBytes(FN_A, assemble('mov eax, 1\nret', 64, FN));
  m.writeBytes(FN_B, assemble('mov eax, 2\nret', 64, FN));
  m.writeBytes(CODE_BASE, assemble(src));
  t.cpu.flushTlb(false);
  return t;
}

const N = 300;
const sum = (N * (N - 1)) / 2;

/**
 * Three rounds of calls to f0..f299 (their sum in R15), a store into f7 (1000 instead of 7),
 * `between`, then one more round (its sum in RAX) and HLT.
 */
function patchedF7Machine(between: string, backgroundMerges = false): TestMachine {
  const fns = Array.from({ length: N }, (_v, i) => `align 16\nf${i}: add eax, strict dword ${i}\n  ret`).join('\n');
  const t = createTestMachine({ jitThreshold: 1, backgroundMerges });
  t.memory.writeBytes(CODE_BASE, assemble(tableCalls(N, 3, fns, `
  mov r15, rax
  mov dword [f7 + 1], 1000
  ${between}
  xor eax, eax
  xor ecx, ecx
again:
  call [table + rcx * 8]
  inc ecx
  cmp ecx, ${N}
  jne again
  hlt`)));
  enterLongMode(t);
  return t;
}

describe.skipIf(!hasNasm)('merged modules', () => {
  it('keeps blocks, links and self-modifying-code checks when small modules are merged', () => {
    const { cpu } = patchedF7Machine('');
    cpu.run(1_000_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.wasm!.modulesMerged).toBeGreaterThan(0);
    expect(cpu.s.gpr[2 * 15]).toBe(3 * sum);
    expect(cpu.s.gpr[0]).toBe(sum - 7 + 1000); // the store into f7 (in a merged module) was seen
  });

  it('moves blocks into a merge compiled in the background, but not one retired while it compiled', async () => {
    // a merge starts compiling in the three rounds; the store into f7 retires its block; the
    // halt lets the merge settle before the last round
    const { cpu } = patchedF7Machine('hlt', true);
    cpu.run(1_000_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.s.gpr[2 * 15]).toBe(3 * sum);
    expect(cpu.wasm!.modulesMerged).toBe(0); // still compiling: the promise settles on the event loop
    for (let i = 0; i < 2000 && cpu.wasm!.modulesMerged === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(cpu.wasm!.modulesMerged).toBe(1);
    cpu.s.halted = false;
    cpu.run(1_000_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.s.gpr[0]).toBe(sum - 7 + 1000); // f7's new code, not its old copy in the merged module
  });
});

describe.skipIf(!hasNasm)('block links and INVLPG', () => {
  it('runs the new code after a code page is remapped and INVLPG\'d (direct and indirect calls)', () => {
    const { cpu } = machine(`
  mov ecx, 40
a: call ${FN}
  add ebx, eax
  mov rsi, ${FN}
  call rsi
  add ebx, eax
  dec ecx
  jnz a
  mov dword [${PT + 8}], ${FN_B + 3}
  invlpg [${FN}]
  mov ecx, 40
b: call ${FN}
  add edx, eax
  call rsi
  add edx, eax
  dec ecx
  jnz b
  hlt
`);
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.s.gpr[2 * 3]).toBe(80); // rbx: function A, 80 calls
    expect(cpu.s.gpr[2 * 2]).toBe(160); // rdx: function B after the remap, 80 calls
  });

  it('keeps every link when a page without translated code is INVLPG\'d', () => {
    const { cpu } = machine(`${CALL_FN_40}
  invlpg [${FN + 0x2000}]
  invlpg [${FN + 0x3000}]
  hlt
`);
    cpu.run(100_000);
    expect(cpu.s.gpr[2 * 3]).toBe(40);
    const epochs = [cpu.tlbEpoch, cpu.globalEpoch];
    cpu.s.halted = false;
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect([cpu.tlbEpoch, cpu.globalEpoch]).toEqual(epochs);
  });

  it('keeps links into global pages when a page of ordinary (user) code is INVLPG\'d', () => {
    const { cpu, memory } = machine(`${CALL_FN_40}
  invlpg [${FN}]
  hlt
`);
    // the caller's code on a global 2 MiB page (PDE.G, CR4.PGE); FN's page stays ordinary
    memory.write32(0x3000, 0x183);
    cpu.s.cr4 |= 0x80;
    cpu.flushTlb(false);
    cpu.run(100_000);
    expect(cpu.s.gpr[2 * 3]).toBe(40);
    const { tlbEpoch, globalEpoch } = cpu;
    cpu.s.halted = false;
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.tlbEpoch).toBeGreaterThan(tlbEpoch); // links into FN's page end
    expect(cpu.globalEpoch).toBe(globalEpoch); // the kernel's do not
  });
});


describe.skipIf(!hasNasm)('links within a page', () => {
  /**
   * Host-started block runs of 50 calls of the function at FN, each after a CR3 reload (a new
   * TLB epoch). `jump` picks the function's conditional branch to its own page: taken, it
   * leaves the block for a successor on the same page; not taken, the function runs as one block.
   */
  function hostRuns(jump: 'jz' | 'jnz'): { runs: number; rbx: number } {
    const t = machine(`
  mov ecx, 50
a: mov rax, cr3
  mov cr3, rax
  call ${FN}
  add ebx, eax
  dec ecx
  jnz a
  hlt
`);
    t.memory.writeBytes(FN_A, assemble(`xor edi, edi\nmov eax, 1\ntest edi, edi\n${jump} x\nnop\nx: add eax, 10\nret`, 64, FN));
    const { cpu } = t;
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    return { runs: cpu.cache!.run, rbx: cpu.s.gpr[2 * 3]! };
  }

  it('keep a link to a successor on the block\'s own page across TLB epochs', () => {
    const across = hostRuns('jz');
    const straight = hostRuns('jnz');
    expect(across.rbx).toBe(550);
    expect(straight.rbx).toBe(550);
    // the exit to the same page is linked once and then taken inside WebAssembly every time,
    // whatever the CR3 reloads did to the TLB epoch: no host run more than the straight function
    expect(across.runs).toBeLessThanOrEqual(straight.runs + 2);
  });

  it('runs the successor of the new code after the page is remapped to other code of the same shape', () => {
    const t = machine(`
  mov ecx, 20
a: call ${FN}
  add ebx, eax
  dec ecx
  jnz a
  mov dword [${PT + 8}], ${FN_B + 3}
  mov rax, cr3
  mov cr3, rax
  mov ecx, 20
b: call ${FN}
  add edx, eax
  dec ecx
  jnz b
  hlt
`);
    const fn = (one: number, ten: number): string => `xor edi, edi\nmov eax, ${one}\ntest edi, edi\njz x\nnop\nx: add eax, ${ten}\nret`;
    t.memory.writeBytes(FN_A, assemble(fn(1, 10), 64, FN));
    t.memory.writeBytes(FN_B, assemble(fn(2, 20), 64, FN));
    t.cpu.run(100_000);
    expect(t.cpu.s.halted).toBe(true);
    expect(t.cpu.s.gpr[2 * 3]).toBe(20 * 11); // rbx: the first page's code and its successor
    expect(t.cpu.s.gpr[2 * 2]).toBe(20 * 22); // rdx: the second page's, after the remap
  });
});

describe.skipIf(!hasNasm)('links renewed after a CR3 write', () => {
  /**
   * 50 rounds of a CR3 reload (a new TLB epoch: every link into other pages is stale) and then
   * three calls of the function at FN, on another page than the caller, and back.
   */
  const ROUNDS = 50;
  const loop = `
  mov ecx, ${ROUNDS}
a: mov rax, cr3
  mov cr3, rax
  call ${FN}
  add ebx, eax
  call ${FN}
  add ebx, eax
  call ${FN}
  add ebx, eax
  dec ecx
  jnz a
  hlt
`;

  it('renews stale links inside WebAssembly once the TLB maps the target page again', () => {
    const { cpu } = machine(loop);
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.s.gpr[2 * 3]).toBe(3 * ROUNDS);
    // per round: the block after the reload, and the first call (FN's page is not in the TLB
    // yet); each host visit is one more. The two later calls and the three returns (a direct
    // link and the indirect-branch cache) are renewed in wasm: with the host doing all the
    // relinking, a round takes 7 host runs
    expect(cpu.cache!.run).toBeLessThan(3 * ROUNDS);
  });

  it('does not renew a link whose page now maps other code', () => {
    // from the 26th round on, FN's page maps function B (same shape, returns 2): the TLB flush of the
    // CR3 reload drops the old mapping, and a link renewed from it would still run function A
    const { cpu } = machine(loop.replace('a: mov rax, cr3', `a: cmp ecx, ${ROUNDS / 2}
  jne keep
  mov dword [${PT + 8}], ${FN_B + 3}
keep:
  mov rax, cr3`));
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect(cpu.s.gpr[2 * 3]).toBe(3 * 1 * (ROUNDS / 2) + 3 * 2 * (ROUNDS / 2)); // 25 rounds of A, 25 of B
  });
});

describe.skipIf(!hasNasm)('batching warm blocks', () => {
  /**
   * Modules compiled while 12 functions on global pages are called 80 times each, with (or
   * without) a CR3 reload before every round: warm starts must still share modules after a
   * CR3 write, which leaves global pages' mappings alone.
   */
  function modules(reload: boolean): number {
    const N = 12;
    const fns = Array.from({ length: N }, (_v, i) => `align 16\nf${i}: lea eax, [rax + ${i + 1}]\n  ret`).join('\n');
    const t = createTestMachine({ jitThreshold: 64 });
    t.memory.writeBytes(CODE_BASE, assemble(tableCalls(N, 80, fns, '  hlt', reload ? 'mov rdx, cr3\n  mov cr3, rdx' : 'nop')));
    enterLongMode(t);
    // global 2 MiB pages (PDE.G) with CR4.PGE, as a kernel maps its text
    for (let i = 0; i < 512; i++) t.memory.write32(0x3000 + i * 8, (i * 0x200000 + 0x183) >>> 0);
    t.cpu.s.cr4 |= 0x80;
    t.cpu.flushTlb(true);
    t.cpu.run(1_000_000);
    expect(t.cpu.s.halted).toBe(true);
    expect(t.cpu.s.gpr[0]).toBe((80 * N * (N + 1)) / 2);
    return t.cpu.wasm!.modulesCompiled;
  }

  it('compiles warm starts on global pages with the next hot block after a CR3 write', () => {
    const quiet = modules(false);
    const reloading = modules(true);
    expect(reloading).toBeLessThanOrEqual(quiet + 2);
  });
});

describe.skipIf(!hasNasm)('indirect-branch cache', () => {
  /**
   * Host-started block runs of `rounds` rounds of 3,000 calls through a register, each returning
   * to its own address (7 bytes apart, over five pages, as call sites are spread).
   */
  function hostRuns(rounds: number): number {
    const t = createTestMachine({ jitThreshold: 1 });
    t.memory.writeBytes(CODE_BASE, assemble(`
  mov r8d, ${rounds}
round:
  lea rax, [rel f]
%rep 3000
  call rax
  times 5 nop
%endrep
  dec r8d
  jnz round
  hlt
f: ret
`));
    enterLongMode(t);
    t.cpu.run(10_000_000);
    expect(t.cpu.s.halted).toBe(true);
    return t.cpu.cache!.run;
  }

  it('holds the return addresses of thousands of call sites (the kernel\'s working set)', () => {
    // the first round enters every return address from the host; later rounds find them in the cache
    const extra = hostRuns(4) - hostRuns(1);
    expect(extra).toBeLessThan(3 * 3000 * 0.05);
  });
});

describe.skipIf(!hasNasm)('links to dropped blocks', () => {
  /**
   * Host-started block runs of 200 calls of FN where, at the 10th, the loop stores 5 either into
   * FN's code (its `mov eax, 1`: the block is dropped and translated again) or into data.
   */
  function hostRuns(intoCode: boolean): { runs: number; rbx: number } {
    const { cpu } = machine(`
  mov ecx, 200
a: call ${FN}
  add ebx, eax
  cmp ecx, 190
  jne skip
  mov byte [${intoCode ? FN + 1 : 'data'}], 5
skip:
  dec ecx
  jnz a
  hlt
data: db 0
`);
    cpu.run(1_000_000);
    expect(cpu.s.halted).toBe(true);
    return { runs: cpu.cache!.run, rbx: cpu.s.gpr[2 * 3]! };
  }

  it('relinks an exit whose successor was dropped, once', () => {
    const patched = hostRuns(true);
    const quiet = hostRuns(false);
    expect(patched.rbx).toBe(11 * 1 + 189 * 5); // the new code from the call after the store
    expect(quiet.rbx).toBe(200);
    // the caller's exit led to the dropped block's stub once, and was linked to the new block
    expect(patched.runs).toBeLessThanOrEqual(quiet.runs + 10);
  });
});

describe.skipIf(!hasNasm)('block entry counts (TYPEVISOR_BT_STATS)', () => {
  it('counts every entry into a translated block, chained ones too, only when asked', () => {
    const off = machine(CALL_FN_40);
    off.cpu.run(100_000);
    expect(off.cpu.s.gpr[2 * 3]).toBe(40);
    expect(off.cpu.wasm!.entries).toBe(0);
    const on = machine(CALL_FN_40);
    on.cpu.wasm!.countEntries();
    on.cpu.run(100_000);
    expect(on.cpu.s.gpr[2 * 3]).toBe(40);
    // three blocks a turn, each entered 40 times: the call, the function, the code after the return
    expect(on.cpu.wasm!.entries).toBe(3 * 40);
  });
});

describe.skipIf(!hasNasm)('stores by another thread during a translation', () => {
  it('drops a block whose bytes changed between the translator reading them and marking its lines', () => {
    const t = machine(CALL_FN_40, true);
    const { cpu } = t;
    expect(cpu.crossThread).toBeDefined();
    const wasm = cpu.wasm!;
    const compile = wasm.compile.bind(wasm);
    let patched = 0;
    // another vCPU's store lands after the bytes were read, before this one marks them: it
    // finds no mark, so nothing tells this vCPU (a raw write, as that store would be here)
    wasm.compile = (ram, rips, offs, isBlockStart, max) => {
      const made = compile(ram, rips, offs, isBlockStart, max);
      if (patched === 0 && made.some((b) => b.rip === FN)) {
        ram.set(assemble('mov eax, 2\nret', 64, FN), FN_A);
        patched = cpu.s.gpr[2 * 1]!; // calls still to come (rcx counts down)
      }
      return made;
    };
    cpu.run(100_000);
    expect(cpu.s.halted).toBe(true);
    expect(patched).toBeGreaterThan(0);
    // every call after the store returned 2: the stale translation never ran
    expect(cpu.s.gpr[2 * 3]).toBe(40 + patched);
  });
});
