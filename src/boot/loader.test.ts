import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ACPI_RSDP_START, MiB, SETUP_DATA_START, ZERO_PAGE_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import { writeAcpiTables } from './acpi/tables.js';
import { buildE820 } from './e820.js';
import { extractVmlinux } from './extract.js';
import { ACCEPTED_FORMATS, BootError, bootImage, detectKernelFormat, loadKernel } from './loader.js';
import { makeBzImage, makeElf, multibootHeader } from './testing/images.js';

function realKernel(): string | undefined {
  const env = process.env.TYPEVISOR_KERNEL;
  if (env) return existsSync(env) ? env : undefined;
  const dir = '/tmp/kernel/boot';
  const f = existsSync(dir) ? readdirSync(dir).find((n) => n.startsWith('vmlinuz-')) : undefined;
  return f ? join(dir, f) : undefined;
}
const KERNEL = realKernel();

const elf64 = (): Uint8Array => makeElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: Uint8Array.of(0xf4) }] });

describe('detectKernelFormat / loadKernel', () => {
  it('dispatches on the image format', () => {
    expect(detectKernelFormat(makeBzImage())).toBe('bzimage');
    expect(detectKernelFormat(elf64())).toBe('vmlinux');
    const mb = makeElf({ elfClass: 32, entry: 0x100000, prefix: multibootHeader(0), segments: [{ paddr: 0x100000, data: Uint8Array.of(0xf4) }] });
    expect(detectKernelFormat(mb)).toBe('multiboot');
    const mb64 = makeElf({ entry: 0x100000, prefix: multibootHeader(0), segments: [{ paddr: 0x100000, data: Uint8Array.of(0xf4) }] });
    expect(detectKernelFormat(mb64)).toBe('multiboot');

    const m = new GuestMemory([{ base: 0, size: 32 * MiB }]);
    const e820 = buildE820(m);
    expect(loadKernel(m, elf64(), { cmdline: '', e820 }).format).toBe('vmlinux');
    expect(loadKernel(m, mb, { cmdline: '', e820 }).entry.mode).toBe('protected32');
  });

  it('refuses unknown images with a BootError listing the accepted formats', () => {
    const m = new GuestMemory([{ base: 0, size: 32 * MiB }]);
    const run = (): unknown => loadKernel(m, new Uint8Array(4096).fill(0x41), { cmdline: '', e820: buildE820(m) });
    expect(run).toThrow(BootError);
    expect(run).toThrow(ACCEPTED_FORMATS);
    const arm = makeElf({ machine: 183, entry: 0x100000, segments: [{ paddr: 0x100000, data: Uint8Array.of(0) }] });
    expect(() => loadKernel(m, arm, { cmdline: '', e820: buildE820(m) })).toThrow(/unknown format/);
  });
});

describe('bootImage', () => {
  it('writes e820, ACPI tables and the kernel in one call', () => {
    const m = new GuestMemory([{ base: 0, size: 64 * MiB }]);
    const b = bootImage(m, makeBzImage(), { cmdline: 'x', cpus: 2, acpi: { pci: true } });
    expect(b.acpi?.rsdp).toBe(ACPI_RSDP_START);
    expect(m.read64(ZERO_PAGE_START + 0x70)).toBe(BigInt(ACPI_RSDP_START));
    expect(m.read8(ZERO_PAGE_START + 0x1e8)).toBe(b.e820.length);
    const m2 = new GuestMemory([{ base: 0, size: 64 * MiB }]);
    const noAcpi = bootImage(m2, makeBzImage(), { cmdline: 'x', cpus: 1, acpi: false });
    expect(noAcpi.acpi).toBeUndefined();
    expect(m2.read64(ZERO_PAGE_START + 0x70)).toBe(0n);
    expect(m2.read64(ZERO_PAGE_START + 0x250)).toBe(0n); // no setup_data without a seed
  });

  it('hands the kernel an RNG seed as a SETUP_RNG_SEED setup_data node (bzImage and vmlinux)', () => {
    const seed = Uint8Array.from({ length: 32 }, (_v, i) => i + 1);
    for (const image of [makeBzImage(), elf64()]) {
      const m = new GuestMemory([{ base: 0, size: 64 * MiB }]);
      bootImage(m, image, { cmdline: 'x', cpus: 1, rngSeed: seed });
      const node = Number(m.read64(ZERO_PAGE_START + 0x250));
      expect(node).toBe(SETUP_DATA_START);
      expect(m.read64(node)).toBe(0n); // next: none
      expect(m.read32(node + 8)).toBe(9); // SETUP_RNG_SEED
      expect(m.read32(node + 12)).toBe(32);
      expect([...m.readBytes(node + 16, 32)]).toEqual([...seed]);
    }
    const m = new GuestMemory([{ base: 0, size: 64 * MiB }]);
    expect(() => bootImage(m, makeBzImage(), { cmdline: 'x', cpus: 1, rngSeed: new Uint8Array(0) })).toThrow(BootError);
  });
});

describe.skipIf(!KERNEL)('Debian cloud kernel', () => {
  const image = KERNEL ? new Uint8Array(readFileSync(KERNEL)) : new Uint8Array(0);
  const initrd = new Uint8Array(4 * MiB).fill(0x30);

  it('loads as a bzImage with initrd above the decompression footprint', () => {
    const m = new GuestMemory([{ base: 0, size: 256 * MiB }]);
    const acpi = writeAcpiTables(m, { cpus: 1 });
    const k = loadKernel(m, image, { cmdline: 'console=ttyS0', e820: buildE820(m), initrd, rsdp: acpi.rsdp });
    expect(k.format).toBe('bzimage');
    expect(k.entry.rip).toBe(0x100200);
    expect(k.kernel.end).toBeGreaterThanOrEqual(0x1000000 + 0x2000000);
    expect(k.initrd!.addr).toBeGreaterThanOrEqual(k.kernel.end);
    expect(k.initrd!.addr + initrd.length).toBeLessThanOrEqual(256 * MiB);
    expect(m.read64(ZERO_PAGE_START + 0x70)).toBe(BigInt(ACPI_RSDP_START));
    expect(m.read16(ZERO_PAGE_START + 0x206)).toBeGreaterThanOrEqual(0x020c);
  });

  it('refuses the bzImage in too little RAM, saying to add memory', () => {
    const m = new GuestMemory([{ base: 0, size: 32 * MiB }]);
    expect(() => loadKernel(m, image, { cmdline: '', e820: buildE820(m) })).toThrow(/--memory/);
  });

  it('loads the extracted vmlinux at its physical addresses', () => {
    const m = new GuestMemory([{ base: 0, size: 256 * MiB }]);
    const k = loadKernel(m, extractVmlinux(image), { cmdline: 'console=ttyS0', e820: buildE820(m), initrd });
    expect(k.format).toBe('vmlinux');
    expect(k.entry).toMatchObject({ mode: 'long64', rip: 0x1000000, regs: { rsi: ZERO_PAGE_START } });
    expect(k.pvhEntry).toBeGreaterThan(0x1000000);
    expect(k.initrd!.addr).toBeGreaterThanOrEqual(k.kernel.end);
  });
});
