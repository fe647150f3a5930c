import { describe, expect, it } from 'vitest';
import { openTranslationChannel, translationMesh } from './translation-channel.js';

// the smallest module: (module (func (result i32) i32.const 42) (export "f" (func 0)))
const MODULE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11]);

describe('translation channels', () => {
  it('keep messages for a thread that runs its event loop before it reads them, in order per sender', async () => {
    const mesh = translationMesh(3);
    const [a, b, c] = mesh.map((ports) => openTranslationChannel(ports));
    const module = new WebAssembly.Module(MODULE);
    b!.post({ kind: 'restart', from: 1 });
    b!.post({ kind: 'module', from: 1, module, exits: [7], blocks: [] });
    c!.post({ kind: 'restart', from: 2 });
    // the main thread runs its event loop between slices (a BroadcastChannel loses them here)
    await new Promise((r) => setTimeout(r, 20));
    const got = [a!.receive(), a!.receive(), a!.receive(), a!.receive()];
    expect(got[3]).toBeUndefined();
    const fromB = got.filter((m) => m?.from === 1);
    expect(fromB.map((m) => m!.kind)).toEqual(['restart', 'module']);
    expect(got.filter((m) => m?.from === 2)).toHaveLength(1);
    const m = fromB[1]!;
    if (m.kind !== 'module') throw new Error('expected the module');
    const inst = new WebAssembly.Instance(m.module);
    expect((inst.exports.f as () => number)()).toBe(42);
    // every other thread gets a message, never its sender
    expect(b!.receive()).toEqual({ kind: 'restart', from: 2 });
    expect(b!.receive()).toBeUndefined();
    expect(c!.receive()?.kind).toBe('restart');
    expect(c!.receive()?.kind).toBe('module');
    expect(c!.receive()).toBeUndefined();
    for (const ch of [a, b, c]) ch!.close();
  });
});
