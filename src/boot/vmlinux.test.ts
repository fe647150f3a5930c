import { describe, expect, it } from 'vitest';
import { CMDLINE_START, MiB, ZERO_PAGE_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import { buildE820 } from './e820.js';
import { XEN_ELFNOTE_PHYS32_ENTRY } from './elf.js';
import { isVmlinux, loadVmlinux } from './vmlinux.js';
import { makeElf } from './testing/images.js';

const KBASE = 0xffff_ffff_8000_0000n;
const text = Uint8Array.from([0x0f, 0x0b, 0x90, 0x90]);

function kernel(over: Partial<Parameters<typeof makeElf>[0]> = {}): Uint8Array {
  const pvh = new Uint8Array(8);
  new DataView(pvh.buffer).setUint32(0, 0x1000100, true);
  return makeElf({
    entry: 0x1000000,
    segments: [
      { paddr: 0x1000000, vaddr: KBASE + 0x1000000n, data: text, memsz: 0x1000 },
      { paddr: 0x1200000, vaddr: KBASE + 0x1200000n, data: Uint8Array.of(1, 2, 3), memsz: 0x100000 },
    ],
    notes: [
      { name: 'Xen', type: 6, desc: Uint8Array.of(0x6c, 0x69, 0x6e, 0x75, 0x78, 0) },
      { name: 'Xen', type: XEN_ELFNOTE_PHYS32_ENTRY, desc: pvh },
    ],
    ...over,
  });
}

const setup = (ramMiB = 32): { m: GuestMemory; e820: ReturnType<typeof buildE820> } => {
  const m = new GuestMemory([{ base: 0, size: ramMiB * MiB }]);
  return { m, e820: buildE820(m) };
};

describe('loadVmlinux', () => {
  it('loads PT_LOADs at p_paddr, zeroes bss and enters phys e_entry in long mode', () => {
    const { m, e820 } = setup();
    m.fill(0x1200000, 0x100000, 0xee);
    const k = loadVmlinux(m, kernel(), { cmdline: 'root=/dev/vda', e820, initrd: new Uint8Array(MiB).fill(5) });
    expect(isVmlinux(kernel())).toBe(true);
    expect(k.format).toBe('vmlinux');
    expect(m.readBytes(0x1000000, 4)).toEqual(text);
    expect(m.read8(0x1000004)).toBe(0);
    expect(m.readBytes(0x1200000, 4)).toEqual(Uint8Array.of(1, 2, 3, 0));
    expect(m.read8(0x12fffff)).toBe(0);
    expect(k.kernel).toEqual({ start: 0x1000000, end: 0x1300000 });
    expect(k.entry).toMatchObject({ mode: 'long64', rip: 0x1000000, regs: { rsi: ZERO_PAGE_START } });
    expect(k.pvhEntry).toBe(0x1000100);
    // boot_params built from scratch
    const zp = ZERO_PAGE_START;
    expect(m.read16(zp + 0x1fe)).toBe(0xaa55);
    expect(m.read32(zp + 0x202)).toBe(0x53726448);
    expect(m.read16(zp + 0x206)).toBe(0x020f);
    expect(m.read8(zp + 0x210)).toBe(0xff);
    expect(m.read32(zp + 0x230)).toBe(0x1000000);
    expect(m.read32(zp + 0x228)).toBe(CMDLINE_START);
    expect(m.read32(zp + 0x238)).toBe(2047);
    expect(m.read32(zp + 0x218)).toBe(31 * MiB);
    expect(m.read32(zp + 0x21c)).toBe(MiB);
  });

  it('translates a virtual e_entry through its segment', () => {
    const { m, e820 } = setup();
    const k = loadVmlinux(m, kernel({ entry: KBASE + 0x1000002n }), { cmdline: '', e820 });
    expect(k.entry.rip).toBe(0x1000002);
  });

  it('validates every header field against the file and guest RAM', () => {
    const { m, e820 } = setup();
    const opts = { cmdline: '', e820 };
    const good = kernel();
    const v = (img: Uint8Array): DataView => new DataView(img.buffer);

    const badPhoff = good.slice();
    v(badPhoff).setBigUint64(32, 0xffff_ffffn, true);
    expect(() => loadVmlinux(m, badPhoff, opts)).toThrow(/program headers .* past the end/);

    const badOffset = good.slice();
    v(badOffset).setBigUint64(64 + 8, BigInt(good.length), true); // first phdr p_offset
    expect(() => loadVmlinux(m, badOffset, opts)).toThrow(/runs past the end/);

    const bigFile = good.slice();
    v(bigFile).setBigUint64(64 + 40, 1n, true); // memsz < filesz
    expect(() => loadVmlinux(m, bigFile, opts)).toThrow(/larger than its memory size/);

    const huge = good.slice();
    v(huge).setBigUint64(64 + 24, 0xffff_ffff_ffff_0000n, true);
    expect(() => loadVmlinux(m, huge, opts)).toThrow(/out of range/);

    expect(() => loadVmlinux(m, kernel({ segments: [{ paddr: 0x7000, data: text }], entry: 0x7000 }), opts)).toThrow(/boot structures below 1 MiB/);
    expect(() => loadVmlinux(m, kernel({ segments: [{ paddr: 0x3000000, data: text }], entry: 0x3000000 }), opts)).toThrow(
      /outside guest RAM.*--memory/,
    );
    expect(() => loadVmlinux(m, kernel({ entry: 0x5000000 }), opts)).toThrow(/entry point .* not inside/);

    const badNote = kernel();
    const noteOff = Number(v(badNote).getBigUint64(64 + 2 * 56 + 8, true));
    v(badNote).setUint32(noteOff + 4, 0x7fff_ffff, true); // descsz
    expect(() => loadVmlinux(m, badNote, opts)).toThrow(/note .* runs past its segment/);

    expect(() => loadVmlinux(m, makeElf({ elfClass: 32, entry: 0x100000, segments: [{ paddr: 0x100000, data: text }] }), opts)).toThrow(
      /not an x86-64 ELF64/,
    );
  });
});
