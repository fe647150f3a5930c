import { describe, expect, it } from 'vitest';
import { CMDLINE_START, EBDA_START, MiB, MULTIBOOT_INFO_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import { buildE820 } from './e820.js';
import { findMultibootHeader, loadMultiboot, MB_AOUT_KLUDGE, MBI_CMDLINE, MBI_MEMORY, MBI_MMAP, MBI_MODS } from './multiboot.js';
import { makeElf, multibootHeader } from './testing/images.js';

const setup = (ramMiB = 16): { m: GuestMemory; e820: ReturnType<typeof buildE820> } => {
  const m = new GuestMemory([{ base: 0, size: ramMiB * MiB }]);
  return { m, e820: buildE820(m) };
};
const cstr = (m: GuestMemory, addr: number): string => {
  let s = '';
  for (let c = m.read8(addr); c !== 0; c = m.read8(++addr)) s += String.fromCharCode(c);
  return s;
};

/** An a.out-kludge kernel: header at file offset 0x40, loaded at 1 MiB. */
function aoutKernel(bss = 0x2000): Uint8Array {
  const file = new Uint8Array(0x1000).fill(0x90);
  const load = 0x100000;
  file.set(multibootHeader(MB_AOUT_KLUDGE | 0x3, { header: load + 0x40, load, loadEnd: load + 0x800, bssEnd: load + 0x800 + bss, entry: load + 0x80 }), 0x40);
  return file;
}

describe('findMultibootHeader', () => {
  it('needs magic, checksum and 4-byte alignment within 8 KiB', () => {
    const f = new Uint8Array(9000);
    f.set(multibootHeader(0), 8192);
    expect(findMultibootHeader(f)).toBeUndefined();
    f.set(multibootHeader(0), 100);
    expect(findMultibootHeader(f)?.offset).toBe(100);
    const bad = new Uint8Array(64);
    bad.set(multibootHeader(0), 4);
    bad[12] ^= 1;
    expect(findMultibootHeader(bad)).toBeUndefined();
    const odd = new Uint8Array(64);
    odd.set(multibootHeader(0), 6);
    expect(findMultibootHeader(odd)).toBeUndefined();
  });
});

describe('loadMultiboot', () => {
  it('loads an a.out-kludge kernel, zeroes bss and fills the info structure', () => {
    const { m, e820 } = setup();
    m.fill(0x100800, 0x2000, 0xff);
    const initrd = new Uint8Array(5000).fill(3);
    const k = loadMultiboot(m, aoutKernel(), { cmdline: 'hello mb', e820, initrd });
    expect(k.format).toBe('multiboot');
    expect(k.entry).toMatchObject({ mode: 'protected32', rip: 0x100080, regs: { rax: 0x2badb002, rbx: MULTIBOOT_INFO_START } });
    expect(k.entry.gdt).toMatchObject({ cs: 0x08, ds: 0x18 });
    expect(m.read8(0x1007ff)).toBe(0x90);
    expect(m.read8(0x100800)).toBe(0);
    expect(m.read8(0x1027ff)).toBe(0);
    const info = MULTIBOOT_INFO_START;
    expect(m.read32(info)).toBe(MBI_MEMORY | MBI_CMDLINE | MBI_MODS | MBI_MMAP | (1 << 9));
    expect(m.read32(info + 4)).toBe(Math.floor(EBDA_START / 1024));
    expect(m.read32(info + 8)).toBe(15 * 1024);
    expect(m.read32(info + 16)).toBe(CMDLINE_START);
    expect(cstr(m, CMDLINE_START)).toBe('hello mb');
    expect(m.read32(info + 20)).toBe(1);
    const mod = m.read32(info + 24);
    const start = m.read32(mod);
    expect(start % 4096).toBe(0);
    expect(m.read32(mod + 4)).toBe(start + 5000);
    expect(m.read8(start)).toBe(3);
    expect(cstr(m, m.read32(mod + 8))).toBe('initrd');
    expect(k.initrd).toEqual({ addr: start, size: 5000 });
    // memory map mirrors the e820 map
    expect(m.read32(info + 44)).toBe(e820.length * 24);
    const mmap = m.read32(info + 48);
    expect(m.read32(mmap)).toBe(20);
    expect(m.read64(mmap + 24 + 4)).toBe(BigInt(e820[1]!.addr));
    expect(m.read64(mmap + 24 + 12)).toBe(BigInt(e820[1]!.size));
    expect(m.read32(mmap + 24 + 20)).toBe(e820[1]!.type);
    expect(cstr(m, m.read32(info + 64))).toBe('typevisor');
  });

  it('loads an ELF32 multiboot kernel without the address flag', () => {
    const { m, e820 } = setup();
    const img = makeElf({
      elfClass: 32,
      entry: 0x100010,
      prefix: multibootHeader(0x2),
      segments: [{ paddr: 0x100000, data: new Uint8Array(32).fill(0xf4), memsz: 0x1000 }],
    });
    const k = loadMultiboot(m, img, { cmdline: '', e820 });
    expect(k.entry.rip).toBe(0x100010);
    expect(k.kernel).toEqual({ start: 0x100000, end: 0x101000 });
    expect(m.read32(MULTIBOOT_INFO_START) & MBI_MODS).toBe(0);
  });

  it('starts the command line with the kernel\'s path, as GRUB and QEMU do', () => {
    const { m, e820 } = setup();
    loadMultiboot(m, aoutKernel(), { cmdline: 'arg1 arg2', kernelName: 'tests/kernel.elf', e820 });
    expect(cstr(m, m.read32(MULTIBOOT_INFO_START + 16))).toBe('tests/kernel.elf arg1 arg2');
    loadMultiboot(m, aoutKernel(), { cmdline: '', kernelName: 'k.elf', e820 });
    expect(cstr(m, m.read32(MULTIBOOT_INFO_START + 16))).toBe('k.elf');
  });

  it('loads a kernel below 1 MiB and moves the information out of its way', () => {
    const { m, e820 } = setup();
    const at8000 = makeElf({ elfClass: 32, entry: 0x8000, prefix: multibootHeader(0x2), segments: [{ paddr: 0x8000, data: new Uint8Array(64).fill(0xf4), memsz: 0x2000 }] });
    const a = loadMultiboot(m, at8000, { cmdline: 'x', kernelName: 'k', e820 });
    expect(a.kernel).toEqual({ start: 0x8000, end: 0xa000 });
    expect(a.entry.regs.rbx).toBe(MULTIBOOT_INFO_START);
    expect(m.read8(0x8000)).toBe(0xf4);
    // a kernel over both default places (0x10000 and 0x20000): info and command line move
    const big = makeElf({ elfClass: 32, entry: 0xc000, prefix: multibootHeader(0x2), segments: [{ paddr: 0xc000, data: new Uint8Array(64).fill(0xf4), memsz: 0x30000 }] });
    const initrd = new Uint8Array(100).fill(7);
    const b = loadMultiboot(m, big, { cmdline: 'moved', kernelName: 'k', e820, initrd });
    const info = b.entry.regs.rbx!;
    expect(info >= 0x1000 && info + 0x1300 <= 0xc000).toBe(true);
    expect(cstr(m, m.read32(info + 16))).toBe('k moved');
    const cmd = m.read32(info + 16);
    expect(cmd >= 0xc000 + 0x30000 || cmd < 0xc000).toBe(true);
    expect(m.read8(m.read32(m.read32(info + 24)))).toBe(7);
    expect(cstr(m, m.read32(info + 64))).toBe('typevisor');
  });

  it('refuses malformed headers and unknown required features', () => {
    const { m, e820 } = setup();
    const opts = { cmdline: '', e820 };
    const unknown = new Uint8Array(64);
    unknown.set(multibootHeader(1 << 5), 0);
    expect(() => loadMultiboot(m, unknown, opts)).toThrow(/does not know/);
    const notElf = new Uint8Array(64);
    notElf.set(multibootHeader(0), 0);
    expect(() => loadMultiboot(m, notElf, opts)).toThrow(/not ELF/);
    const before = new Uint8Array(0x100);
    before.set(multibootHeader(MB_AOUT_KLUDGE, { header: 0x100000, load: 0x100000 - 0x1000, loadEnd: 0, bssEnd: 0, entry: 0x100000 }), 0);
    expect(() => loadMultiboot(m, before, opts)).toThrow(/before the beginning/);
    const entryOut = new Uint8Array(0x100);
    entryOut.set(multibootHeader(MB_AOUT_KLUDGE, { header: 0x100000, load: 0x100000, loadEnd: 0, bssEnd: 0, entry: 0x200000 }), 0);
    expect(() => loadMultiboot(m, entryOut, opts)).toThrow(/entry_addr .* outside/);
    const tooBig = new Uint8Array(0x100);
    tooBig.set(multibootHeader(MB_AOUT_KLUDGE, { header: 0x100000, load: 0x100000, loadEnd: 0x100000 + 0x200, bssEnd: 0, entry: 0x100000 }), 0);
    expect(() => loadMultiboot(m, tooBig, opts)).toThrow(/past the end/);
    const low = new Uint8Array(0x100);
    low.set(multibootHeader(MB_AOUT_KLUDGE, { header: 0x800, load: 0x800, loadEnd: 0, bssEnd: 0, entry: 0x800 }), 0);
    expect(() => loadMultiboot(m, low, opts)).toThrow(/overlaps the real-mode vectors and the boot GDT at 0x0\.\.0x1000/);
    const rom = new Uint8Array(0x100);
    rom.set(multibootHeader(MB_AOUT_KLUDGE, { header: 0x9f000, load: 0x9f000, loadEnd: 0, bssEnd: 0xa0000, entry: 0x9f000 }), 0);
    expect(() => loadMultiboot(m, rom, opts)).toThrow(/overlaps the EBDA, VGA, ROM and ACPI area/);
    expect(() => loadMultiboot(m, aoutKernel(32 * MiB), opts)).toThrow(/outside guest RAM/);
  });
});
