/**
 * Branch hints: every hint a translated block carries must name one of its `if` instructions
 * in the module's `metadata.code.branch_hint` section, or V8 drops the section (and the slow
 * paths move back inline, silently). Reads the module bytes back: sections, the code section's
 * function bodies, the hint section's offsets.
 */
import { describe, expect, it } from 'vitest';
import { assemble, hasNasm } from '../core/asm.test-helper.js';
import { CODE_BASE } from '../core/test-machine.js';
import { buildTrace } from '../translate/trace.js';
import { blockModule, translateTrace } from './translate.js';
import type { BlockLayout } from './codegen.js';
import { Op } from './encoder.js';

const LAYOUT: BlockLayout = { base: 0x1000_0000, links: 0x1010_0000, ic: 0x1090_0000, wtlb: 0x10a0_0000, wtlbAddr: 0x10c0_0000, codeLines: 0x1001_1400 };

function reader(bytes: Uint8Array, at: number) {
  return {
    at,
    u32(): number {
      let v = 0;
      for (let shift = 0; ; shift += 7) {
        const b = bytes[this.at++]!;
        v += (b & 0x7f) * 2 ** shift;
        if (!(b & 0x80)) return v;
      }
    },
    name(): string {
      const n = this.u32();
      const s = new TextDecoder().decode(bytes.subarray(this.at, this.at + n));
      this.at += n;
      return s;
    },
  };
}

/** Per hinted function: [absolute byte offset in the module, hint value]; and body starts. */
function readHints(bytes: Uint8Array): { hints: Map<number, [number, number][]>; bodies: number[] } {
  const r = reader(bytes, 8);
  const hints = new Map<number, [number, number][]>();
  const bodies: number[] = [];
  while (r.at < bytes.length) {
    const id = bytes[r.at++]!;
    const size = r.u32();
    const end = r.at + size;
    if (id === 0) {
      const s = reader(bytes, r.at);
      if (s.name() === 'metadata.code.branch_hint') {
        for (let n = s.u32(); n > 0; n--) {
          const fn = s.u32();
          const list: [number, number][] = [];
          for (let k = s.u32(); k > 0; k--) {
            const off = s.u32();
            expect(s.u32()).toBe(1);
            list.push([off, bytes[s.at++]!]);
          }
          hints.set(fn, list);
        }
      }
    } else if (id === 10) {
      const c = reader(bytes, r.at);
      for (let n = c.u32(); n > 0; n--) {
        const len = c.u32();
        bodies.push(c.at);
        c.at += len;
      }
    }
    r.at = end;
  }
  return { hints, bodies };
}

describe.skipIf(!hasNasm)('branch hints of translated blocks', () => {
  it('point at if instructions of the right function, slow paths unlikely, chaining likely', () => {
    const code = assemble(`
      mov rax, [rdi]
      add [rsi + 8], rax
      cmp rax, rbx
      jl out
      push rax
    out: ret`);
    const ram = new Uint8Array(CODE_BASE + 0x2000);
    ram.set(code, CODE_BASE);
    let exits = 1;
    const body = translateTrace(buildTrace(ram, CODE_BASE, CODE_BASE), CODE_BASE, LAYOUT, () => exits++).body;
    // two blocks in one module: the second function's offsets count from its own body
    const { bytes } = blockModule([body, body]);
    const { hints, bodies } = readHints(bytes);
    expect([...hints.keys()]).toEqual([0, 1]);
    for (const [fn, list] of hints) {
      expect(list.length).toBe(body.hints.length);
      for (const [off, v] of list) {
        expect(bytes[bodies[fn]! + off]).toBe(Op.if);
        expect([0, 1]).toContain(v);
      }
    }
    const values = hints.get(0)!.map(([, v]) => v);
    // the load's and the stores' slow paths, the stop checks: unlikely; the TLB hits and the
    // chained exits: likely
    expect(values.filter((v) => v === 0).length).toBeGreaterThanOrEqual(5);
    expect(values.filter((v) => v === 1).length).toBeGreaterThanOrEqual(4);
    expect(new WebAssembly.Module(bytes)).toBeInstanceOf(WebAssembly.Module);
  });
});
