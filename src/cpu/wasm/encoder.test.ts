import { describe, expect, it } from 'vitest';
import { assembleModule, FuncBody, T } from './encoder.js';

/** WebAssembly.Module.customSections (not in every lib's typings). */
const customSections = (mod: WebAssembly.Module, name: string): ArrayBuffer[] =>
  (WebAssembly.Module as unknown as { customSections(m: WebAssembly.Module, n: string): ArrayBuffer[] }).customSections(mod, name);

/** The function names of a module's name section (subsection 1), by function index. */
function functionNames(mod: WebAssembly.Module): Map<number, string> {
  const names = new Map<number, string>();
  for (const sec of customSections(mod, 'name')) {
    const b = new Uint8Array(sec);
    let at = 0;
    const u32 = (): number => {
      let v = 0;
      for (let shift = 0; ; shift += 7) {
        const x = b[at++]!;
        v += (x & 0x7f) * 2 ** shift;
        if (!(x & 0x80)) return v;
      }
    };
    while (at < b.length) {
      const id = b[at++]!;
      const end = u32() + at;
      if (id === 1) {
        for (let n = u32(); n > 0; n--) {
          const i = u32();
          const len = u32();
          names.set(i, new TextDecoder().decode(b.subarray(at, at + len)));
          at += len;
        }
      }
      at = end;
    }
  }
  return names;
}

const body = (label?: string): FuncBody => {
  const f = new FuncBody([], [T.I32]);
  f.i32(7);
  f.label = label;
  return f;
};

describe('assembleModule', () => {
  it('names labelled functions in a name section (what V8 shows in profiles), after the imports', () => {
    const imports = [{ module: 'h', name: 'x', params: [], results: [] }];
    const mod = new WebAssembly.Module(assembleModule(imports, [body('bffffffff81000000'), body(), body('b401000')], { a: 1, b: 3 }, []));
    expect([...functionNames(mod)]).toEqual([[1, 'bffffffff81000000'], [3, 'b401000']]);
    const inst = new WebAssembly.Instance(mod, { e: { m: new WebAssembly.Memory({ initial: 1 }) }, h: { x: () => undefined } });
    expect((inst.exports.a as () => number)()).toBe(7);
  });

  it('has no name section when nothing is labelled', () => {
    const mod = new WebAssembly.Module(assembleModule([], [body()], { a: 0 }, []));
    expect(customSections(mod, 'name')).toHaveLength(0);
  });
});
