import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findKernel } from '../../tests/support/kernel.js';
import { ACPI_RSDP_START, CMDLINE_START, KERNEL_LOAD_ADDR, MiB, PAGE_SIZE, ZERO_PAGE_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import { BP_ACPI_RSDP_ADDR, BP_E820_ENTRIES, BP_E820_TABLE, BP_EXT_RAMDISK_IMAGE } from './boot-params.js';
import { bzImageFootprint, loadBzImage, parseBzImageHeader } from './bzimage.js';
import { buildE820 } from './e820.js';
import { BootError } from './errors.js';
import { makeBzImage } from './testing/images.js';

const setup = (ramMiB = 64): { m: GuestMemory; e820: ReturnType<typeof buildE820> } => {
  const m = new GuestMemory([{ base: 0, size: ramMiB * MiB }]);
  return { m, e820: buildE820(m) };
};

describe('parseBzImageHeader', () => {
  it('reads the setup header fields', () => {
    const h = parseBzImageHeader(makeBzImage({ setupSects: 7, initSize: 0x300000, prefAddress: 0x1000000 }));
    expect(h).toMatchObject({
      version: 0x020f,
      setupSects: 7,
      kernelOffset: 8 * 512,
      relocatable: true,
      kernelAlignment: 0x200000,
      prefAddress: 0x1000000,
      initSize: 0x300000,
      initrdAddrMax: 0x7fffffff,
      cmdlineSize: 2047,
    });
    expect(h.setupHeader.length).toBe(0x26c - 0x1f1);
  });

  it('treats setup_sects = 0 as 4', () => {
    expect(parseBzImageHeader(makeBzImage({ setupSects: 0, pm: new Uint8Array(0x2000) })).kernelOffset).toBe(5 * 512);
  });

  it('refuses old protocols, 32-bit-only kernels and truncated images', () => {
    expect(() => parseBzImageHeader(makeBzImage({ version: 0x0205 }))).toThrow(/boot protocol 2.05.*2.06 or newer/);
    expect(() => parseBzImageHeader(makeBzImage({ xloadflags: 0 }))).toThrow(/no 64-bit entry point/);
    expect(() => parseBzImageHeader(makeBzImage({ version: 0x0209 }))).toThrow(/no 64-bit entry point/);
    const img = makeBzImage({ setupSects: 60, pm: new Uint8Array(16) });
    expect(() => parseBzImageHeader(img.subarray(0, 4096))).toThrow(/truncated/);
    expect(() => parseBzImageHeader(new Uint8Array(4096))).toThrow(/no bzImage header/);
    expect(() => parseBzImageHeader(makeBzImage({ kernelAlignment: 0x300000 }))).toThrow(/power of two/);
  });
});

describe('parseBzImageHeader: files shorter than the header says, and damaged payloads', () => {
  const payload = Uint8Array.from([0x02, 0x21, 0x4c, 0x18, 1, 2, 3, 4]); // an LZ4 legacy magic

  it('checks syssize against the file size', () => {
    const img = makeBzImage({ pm: new Uint8Array(8192) });
    expect(parseBzImageHeader(img).pmSize).toBe(8192);
    expect(() => parseBzImageHeader(img.subarray(0, img.length - 16))).toThrow(
      /^bzImage is truncated: its header's syssize .* needs a file of at least 10752 bytes but it has 10736: .*copy or download the kernel again$/,
    );
    // A header without syssize (0) is checked by the other fields only.
    expect(parseBzImageHeader(makeBzImage({ syssize: 0 })).pmSize).toBe(0);
  });

  it('checks payload_offset + payload_length against the file size', () => {
    const img = makeBzImage({ payload, syssize: 0 });
    expect(parseBzImageHeader(img).payloadLength).toBe(payload.length);
    new DataView(img.buffer).setUint32(0x24c, 1 << 20, true);
    expect(() => parseBzImageHeader(img)).toThrow(/^bzImage is truncated: its header's payload_offset\/payload_length \(1048576 bytes at 2816\)/);
  });

  it('refuses a payload in no compression format Linux uses, in plain words', () => {
    const img = makeBzImage({ payload: Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0, 0]) });
    expect(() => parseBzImageHeader(img)).toThrow(
      /^bzImage payload's compression format is not recognised \(it starts de ad be ef; .*\): the file is damaged or is not a Linux kernel/,
    );
    expect(() => parseBzImageHeader(makeBzImage({ payload }))).not.toThrow();
  });

  const kernel = findKernel();
  it.skipIf(!kernel)('refuses the first 64 KiB and the first 4 MiB of the Debian kernel, and takes the whole file', () => {
    const image = new Uint8Array(readFileSync(kernel!));
    expect(() => parseBzImageHeader(image)).not.toThrow();
    for (const size of [64 * 1024, 4 * MiB, image.length - 2048]) {
      expect(() => parseBzImageHeader(image.subarray(0, size))).toThrow(new RegExp(`^bzImage is truncated: .* but it has ${size}: `));
    }
    const damaged = image.slice();
    const h = parseBzImageHeader(image);
    damaged.fill(0, h.kernelOffset + h.payloadOffset, h.kernelOffset + h.payloadOffset + 8);
    expect(() => parseBzImageHeader(damaged)).toThrow(/compression format is not recognised/);
  });
});

describe('bzImageFootprint', () => {
  it('follows head_64.S: relocatable kernels decompress at max(aligned load, pref_address)', () => {
    const h = parseBzImageHeader(makeBzImage({ prefAddress: 0x1000000, initSize: 0x3378000 }));
    expect(bzImageFootprint(h, KERNEL_LOAD_ADDR, 0x100000)).toEqual({ target: 0x1000000, end: 0x1000000 + 0x3378000 });
    expect(bzImageFootprint(h, 0x2100000, 0x100000).target).toBe(0x2200000);
    const fixed = parseBzImageHeader(makeBzImage({ relocatable: false, prefAddress: 0x400000, initSize: 0x100000 }));
    expect(bzImageFootprint(fixed, 0x2100000, 0x100000)).toEqual({ target: 0x400000, end: 0x2200000 });
  });
});

describe('loadBzImage', () => {
  it('loads the protected-mode part at 1 MiB and builds boot_params', () => {
    const { m, e820 } = setup();
    const img = makeBzImage();
    const k = loadBzImage(m, img, { cmdline: 'console=ttyS0 quiet', e820, rsdp: ACPI_RSDP_START });
    expect(k.format).toBe('bzimage');
    expect(new TextDecoder().decode(m.readBytes(KERNEL_LOAD_ADDR, 4))).toBe('KERN');
    expect(k.entry.rip).toBe(KERNEL_LOAD_ADDR + 0x200);
    expect(k.entry.regs.rsi).toBe(ZERO_PAGE_START);
    expect(k.entry.mode).toBe('long64');
    const zp = ZERO_PAGE_START;
    expect(m.read32(zp + 0x202)).toBe(0x53726448); // header copied
    expect(m.read16(zp + 0x206)).toBe(0x020f);
    expect(m.read8(zp + 0x210)).toBe(0xff); // type_of_loader
    expect(m.read8(zp + 0x211)).toBe(0x81); // LOADED_HIGH | CAN_USE_HEAP
    expect(m.read16(zp + 0x224)).toBe(0xfe00);
    expect(m.read32(zp + 0x228)).toBe(CMDLINE_START);
    expect(new TextDecoder().decode(m.readBytes(CMDLINE_START, 20))).toBe('console=ttyS0 quiet\0');
    expect(m.read64(zp + BP_ACPI_RSDP_ADDR)).toBe(BigInt(ACPI_RSDP_START));
    expect(m.read8(zp + BP_E820_ENTRIES)).toBe(e820.length);
    expect(m.read64(zp + BP_E820_TABLE + 20 * 2)).toBe(0x100000n);
    expect(m.read64(zp + BP_E820_TABLE + 20 * 2 + 8)).toBe(BigInt(63 * MiB));
    expect(m.read32(zp + BP_E820_TABLE + 20 * 2 + 16)).toBe(1);
    expect(m.read32(zp + 0x218)).toBe(0); // no initrd
    expect(m.read8(zp + 0x1ef)).toBe(0); // sentinel
  });

  it('puts the initrd page-aligned at the top of RAM, below initrd_addr_max', () => {
    const { m, e820 } = setup();
    const initrd = new Uint8Array(3 * MiB + 123).fill(7);
    const k = loadBzImage(m, makeBzImage(), { cmdline: '', e820, initrd });
    const top = 64 * MiB;
    const want = Math.floor((top - initrd.length) / PAGE_SIZE) * PAGE_SIZE;
    expect(k.initrd).toEqual({ addr: want, size: initrd.length });
    expect(m.read32(ZERO_PAGE_START + 0x218)).toBe(want);
    expect(m.read32(ZERO_PAGE_START + 0x21c)).toBe(initrd.length);
    expect(m.read32(ZERO_PAGE_START + BP_EXT_RAMDISK_IMAGE)).toBe(0);
    expect(m.read8(want + initrd.length - 1)).toBe(7);

    const { m: m2, e820: e2 } = setup();
    const low = loadBzImage(m2, makeBzImage({ initrdAddrMax: 40 * MiB - 1 }), { cmdline: '', e820: e2, initrd });
    expect(low.initrd!.addr + initrd.length).toBeLessThanOrEqual(40 * MiB);
  });

  it('refuses an initrd that does not fit above the kernel footprint', () => {
    const { m, e820 } = setup(32);
    const img = makeBzImage({ prefAddress: 0x1000000, initSize: 12 * MiB });
    expect(() => loadBzImage(m, img, { cmdline: '', e820, initrd: new Uint8Array(5 * MiB) })).toThrow(
      /^initrd \(5 MiB\) does not fit in guest RAM \(32 MiB\): give the guest more memory with --memory/,
    );
    // 4 MiB fits exactly between 28 MiB and 32 MiB.
    expect(loadBzImage(m, img, { cmdline: '', e820, initrd: new Uint8Array(4 * MiB) }).initrd!.addr).toBe(28 * MiB);
  });

  it('refuses a kernel whose decompression footprint is outside RAM', () => {
    const { m, e820 } = setup(16);
    expect(() => loadBzImage(m, makeBzImage({ initSize: 0x3378000 }), { cmdline: '', e820 })).toThrow(BootError);
    expect(() => loadBzImage(m, makeBzImage({ initSize: 0x3378000 }), { cmdline: '', e820 })).toThrow(/--memory/);
  });

  it('refuses a command line longer than cmdline_size', () => {
    const { m, e820 } = setup();
    expect(() => loadBzImage(m, makeBzImage({ cmdlineSize: 10 }), { cmdline: 'x'.repeat(11), e820 })).toThrow(/at most 10/);
    expect(() => loadBzImage(m, makeBzImage({ cmdlineSize: 10 }), { cmdline: 'x'.repeat(10), e820 })).not.toThrow();
  });
});
