/**
 * Kernel images are untrusted input. Mutate valid images (bzImage, ELF vmlinux, multiboot
 * a.out-kludge and ELF, an LZ4 payload) at random and check that loading and extraction either
 * succeed or fail with a BootError — never another exception, a hang, or a write outside RAM.
 * Seeded, so a failure names its case and replays.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../support/rng.js';
import { BootError } from '../../src/boot/errors.js';
import { extractVmlinux } from '../../src/boot/extract.js';
import { bootImage } from '../../src/boot/loader.js';
import { makeBzImage, makeElf, multibootHeader } from '../../src/boot/testing/images.js';
import { GuestMemory } from '../../src/machine/memory.js';

const ITERATIONS = Number(process.env['FUZZ_ITERATIONS'] ?? 1500);
const memory = new GuestMemory([{ base: 0, size: 96 * 1024 * 1024 }]);

function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  let out = input.slice();
  const edits = 1 + Math.floor(rand() * 8);
  for (let e = 0; e < edits; e++) {
    const kind = rand();
    const at = Math.floor(rand() * out.length);
    if (kind < 0.6) {
      out[at] = Math.floor(rand() * 256); // overwrite a byte
    } else if (kind < 0.75) {
      // a 32-bit field set to an extreme value
      const v = [0, 0xffffffff, 0x80000000, 0x7fffffff, 0x1000, 0xfffff000][Math.floor(rand() * 6)]!;
      if (at + 4 <= out.length) new DataView(out.buffer, out.byteOffset).setUint32(at, v, true);
    } else if (kind < 0.9) {
      out = out.slice(0, Math.max(1, at)); // truncate
    } else {
      const grown = new Uint8Array(out.length + 64);
      grown.set(out);
      out = grown; // extend with zeros
    }
  }
  return out;
}

/** An LZ4 legacy frame holding `data` as one literal-only block. */
function lz4Legacy(data: Uint8Array): Uint8Array {
  const block: number[] = [];
  let n = data.length;
  block.push((Math.min(n, 15) << 4) & 0xf0);
  if (n >= 15) {
    n -= 15;
    while (n >= 255) {
      block.push(255);
      n -= 255;
    }
    block.push(n);
  }
  block.push(...data);
  const out = new Uint8Array(8 + block.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x184c2102, true);
  v.setUint32(4, block.length, true);
  out.set(block, 8);
  return out;
}

const elfKernel = makeElf({ entry: 0x1000000, segments: [{ paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: new Uint8Array(4096).fill(0x90) }] });
const seeds: Record<string, Uint8Array> = {
  bzImage: makeBzImage(),
  'bzImage with an LZ4 payload': makeBzImage({ payload: lz4Legacy(elfKernel) }),
  vmlinux: elfKernel,
  'multiboot a.out kludge': (() => {
    const h = multibootHeader(0x10003, { header: 0x100000, load: 0x100000, loadEnd: 0x101000, bssEnd: 0x102000, entry: 0x100020 });
    const img = new Uint8Array(4096);
    img.set(h, 0);
    return img;
  })(),
  'multiboot ELF': makeElf({ elfClass: 32, machine: 3, entry: 0x100000, prefix: multibootHeader(0x3), segments: [{ paddr: 0x100000, data: new Uint8Array(1024) }] }),
  // below 1 MiB and over the default information area: the loader moves it
  'multiboot ELF below 1 MiB': makeElf({ elfClass: 32, machine: 3, entry: 0xc000, prefix: multibootHeader(0x3), segments: [{ paddr: 0xc000, data: new Uint8Array(1024), memsz: 0x20000 }] }),
};

describe.each(Object.entries(seeds))('fuzzing the loaders with mutated %s images', (name, seed) => {
  it(`${ITERATIONS} mutations load or fail with BootError`, () => {
    const initrd = new Uint8Array(4096).fill(7);
    let loaded = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const rand = rng(0x9e3779b9 ^ (i * 2654435761) ^ name.length);
      const image = i === 0 ? seed : mutate(seed, rand);
      for (const run of [
        () => bootImage(memory, image, { cmdline: 'console=ttyS0', initrd, cpus: 1 }),
        () => extractVmlinux(image, { maxOutput: 16 * 1024 * 1024 }),
      ]) {
        try {
          run();
          loaded++;
        } catch (e) {
          if (!(e instanceof BootError)) {
            throw new Error(`case ${i} of ${name}: ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
          }
        }
      }
    }
    expect(loaded).toBeGreaterThan(0); // the unmutated seed loads
  });
});
