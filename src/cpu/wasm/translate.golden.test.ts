/**
 * Golden tests of the translator: a few guest snippets → the WebAssembly text of the module
 * they become (disassembled with wabt). A change to the translator shows as a diff of these
 * files (golden/*.wat); review it, then accept it with `npx vitest run -u src/cpu/wasm`.
 * The CPU oracle (tests/cpu-oracle, wasm project) checks what the code does; these show what
 * it is.
 */
import { describe, expect, it } from 'vitest';
import initWabt from 'wabt';
import { assemble, hasNasm } from '../core/asm.test-helper.js';
import { CODE_BASE } from '../core/test-machine.js';
import { buildTrace } from '../translate/trace.js';
import { blockModule, translateTrace } from './translate.js';
import type { BlockLayout } from './codegen.js';

/** Fixed arena offsets, so the text does not depend on a RAM size. */
const LAYOUT: BlockLayout = { base: 0x1000_0000, links: 0x1010_0000, ic: 0x1090_0000, wtlb: 0x10a0_0000, wtlbAddr: 0x10c0_0000, codeLines: 0x1001_1400 };

const SNIPPETS: Record<string, string> = {
  // a counted loop on registers: the block loops on itself, dead flags cost nothing
  'register-loop': `
    mov ecx, 10
  l: add rax, rcx
    dec ecx
    jnz l
    ret`,
  // loads and stores through the inline TLB check
  'memory': `
    mov rax, [rdi]
    add [rsi + 8], rax
    mov dword [rsi + 16], 5
    ret`,
  // a compare steering SETcc, CMOVcc and a conditional branch out of the block
  'flags': `
    cmp rax, rbx
    setb cl
    cmovz rdx, rsi
    jl out
    inc rax
  out: ret`,
  // stack and calls: PUSH/POP, a CALL the trace follows and its RET back
  'call-ret': `
    push rbx
    mov rbx, rdi
    call f
    pop rbx
    ret
  f: lea rax, [rbx + rbx * 2]
    ret`,
  // an instruction the translator hands to the interpreter (the runtime's step)
  'fallback': `
    repe cmpsb
    add rax, 1
    ret`,
};

describe.skipIf(!hasNasm)('translator golden output', async () => {
  const wabt = await initWabt();
  it.each(Object.keys(SNIPPETS))('%s', async (name) => {
    const code = assemble(SNIPPETS[name]!);
    const ram = new Uint8Array(CODE_BASE + 0x2000);
    ram.set(code, CODE_BASE);
    let exits = 1;
    const trace = buildTrace(ram, CODE_BASE, CODE_BASE);
    const { body } = translateTrace(trace, CODE_BASE, LAYOUT, () => exits++);
    const { bytes } = blockModule([body]);
    const mod = wabt.readWasm(bytes, { readDebugNames: true, tail_call: true, simd: true });
    mod.generateNames();
    mod.applyNames();
    const text = `;; ${SNIPPETS[name]!.trim().split('\n').map((l) => l.trim()).join(' | ')}\n${mod.toText({ foldExprs: false, inlineExport: false })}`;
    mod.destroy();
    await expect(text).toMatchFileSnapshot(`golden/${name}.wat`);
  });
});
