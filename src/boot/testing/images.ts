/**
 * Synthetic kernel images for the boot module's tests: minimal bzImages, ELF32/ELF64 files
 * and multiboot kernels, built byte by byte so each test controls every header field.
 */

export interface BzImageSpec {
  version?: number;
  setupSects?: number;
  /** Protected-mode part (default 8 KiB of 0xcc with a marker at the start). */
  pm?: Uint8Array;
  xloadflags?: number;
  relocatable?: boolean;
  kernelAlignment?: number;
  prefAddress?: number;
  initSize?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  loadflags?: number;
  /** Compressed payload placed inside pm at payloadOffset. */
  payload?: Uint8Array;
  payloadOffset?: number;
  /** Protected-mode part in 16-byte paragraphs (default: all of pm, in whole paragraphs). */
  syssize?: number;
}

export function makeBzImage(spec: BzImageSpec = {}): Uint8Array {
  const setupSects = spec.setupSects ?? 4;
  const setupSize = ((setupSects || 4) + 1) * 512;
  let pm = spec.pm;
  if (!pm) {
    pm = new Uint8Array(8192).fill(0xcc);
    pm.set([0x4b, 0x45, 0x52, 0x4e], 0); // "KERN"
  }
  const payloadOffset = spec.payloadOffset ?? 0x100;
  if (spec.payload) {
    const grown = new Uint8Array(Math.max(pm.length, payloadOffset + spec.payload.length));
    grown.set(pm);
    grown.set(spec.payload, payloadOffset);
    pm = grown;
  }
  const img = new Uint8Array(setupSize + pm.length);
  const v = new DataView(img.buffer);
  v.setUint8(0x1f1, setupSects);
  v.setUint32(0x1f4, spec.syssize ?? Math.floor(pm.length / 16), true);
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x200, 0xeb); // jmp short
  v.setUint8(0x201, 0x6a); // header ends at 0x202 + 0x6a = 0x26c
  v.setUint32(0x202, 0x5372_6448, true);
  v.setUint16(0x206, spec.version ?? 0x020f, true);
  v.setUint8(0x211, spec.loadflags ?? 0x01);
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, spec.initrdAddrMax ?? 0x7fff_ffff, true);
  v.setUint32(0x230, spec.kernelAlignment ?? 0x20_0000, true);
  v.setUint8(0x234, (spec.relocatable ?? true) ? 1 : 0);
  v.setUint8(0x235, 21);
  v.setUint16(0x236, spec.xloadflags ?? 0x1, true);
  v.setUint32(0x238, spec.cmdlineSize ?? 2047, true);
  if (spec.payload) {
    v.setUint32(0x248, payloadOffset, true);
    v.setUint32(0x24c, spec.payload.length, true);
  }
  v.setBigUint64(0x258, BigInt(spec.prefAddress ?? 0x100_0000), true);
  v.setUint32(0x260, spec.initSize ?? 0x20_0000, true);
  img.set(pm, setupSize);
  return img;
}

export interface ElfSegmentSpec {
  type?: number; // default PT_LOAD
  paddr: number;
  vaddr?: bigint;
  data: Uint8Array;
  memsz?: number;
}

export interface ElfSpec {
  elfClass?: 32 | 64;
  machine?: number;
  entry: bigint | number;
  segments: ElfSegmentSpec[];
  /** Notes, gathered in one PT_NOTE segment. */
  notes?: { name: string; type: number; desc: Uint8Array }[];
  /** Bytes placed right after the ELF header (e.g. a multiboot header). */
  prefix?: Uint8Array;
}

const align4 = (n: number): number => (n + 3) & ~3;

export function encodeNotes(notes: { name: string; type: number; desc: Uint8Array }[]): Uint8Array {
  const parts: number[] = [];
  for (const n of notes) {
    const name = [...n.name].map((c) => c.charCodeAt(0)).concat([0]);
    const hdr = new Uint8Array(12);
    const hv = new DataView(hdr.buffer);
    hv.setUint32(0, name.length, true);
    hv.setUint32(4, n.desc.length, true);
    hv.setUint32(8, n.type, true);
    parts.push(...hdr, ...name, ...new Array(align4(name.length) - name.length).fill(0));
    parts.push(...n.desc, ...new Array(align4(n.desc.length) - n.desc.length).fill(0));
  }
  return Uint8Array.from(parts);
}

export function makeElf(spec: ElfSpec): Uint8Array {
  const is64 = (spec.elfClass ?? 64) === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const segs = [...spec.segments];
  const noteBytes = spec.notes ? encodeNotes(spec.notes) : undefined;
  const phnum = segs.length + (noteBytes ? 1 : 0);
  const prefix = spec.prefix ?? new Uint8Array(0);
  const phoff = ehsize + align4(prefix.length);
  let off = phoff + phnum * phentsize;
  const placed: { type: number; offset: number; filesz: number; memsz: number; paddr: number; vaddr: bigint; data: Uint8Array }[] = [];
  for (const s of segs) {
    off = (off + 15) & ~15;
    placed.push({ type: s.type ?? 1, offset: off, filesz: s.data.length, memsz: s.memsz ?? s.data.length, paddr: s.paddr, vaddr: s.vaddr ?? BigInt(s.paddr), data: s.data });
    off += s.data.length;
  }
  if (noteBytes) {
    off = align4(off);
    placed.push({ type: 4, offset: off, filesz: noteBytes.length, memsz: 0, paddr: 0, vaddr: 0n, data: noteBytes });
    off += noteBytes.length;
  }
  const img = new Uint8Array(off);
  const v = new DataView(img.buffer);
  img.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1], 0);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, spec.machine ?? (is64 ? 62 : 3), true);
  v.setUint32(20, 1, true);
  if (is64) {
    v.setBigUint64(24, BigInt(spec.entry), true);
    v.setBigUint64(32, BigInt(phoff), true);
    v.setUint16(52, ehsize, true);
    v.setUint16(54, phentsize, true);
    v.setUint16(56, phnum, true);
  } else {
    v.setUint32(24, Number(spec.entry), true);
    v.setUint32(28, phoff, true);
    v.setUint16(40, ehsize, true);
    v.setUint16(42, phentsize, true);
    v.setUint16(44, phnum, true);
  }
  img.set(prefix, ehsize);
  placed.forEach((p, i) => {
    const o = phoff + i * phentsize;
    if (is64) {
      v.setUint32(o, p.type, true);
      v.setUint32(o + 4, 5, true);
      v.setBigUint64(o + 8, BigInt(p.offset), true);
      v.setBigUint64(o + 16, p.vaddr, true);
      v.setBigUint64(o + 24, BigInt(p.paddr), true);
      v.setBigUint64(o + 32, BigInt(p.filesz), true);
      v.setBigUint64(o + 40, BigInt(p.memsz), true);
      v.setBigUint64(o + 48, 16n, true);
    } else {
      v.setUint32(o, p.type, true);
      v.setUint32(o + 4, p.offset, true);
      v.setUint32(o + 8, Number(p.vaddr), true);
      v.setUint32(o + 12, p.paddr, true);
      v.setUint32(o + 16, p.filesz, true);
      v.setUint32(o + 20, p.memsz, true);
      v.setUint32(o + 24, 5, true);
      v.setUint32(o + 28, 16, true);
    }
    img.set(p.data, p.offset);
  });
  return img;
}

/** A 12-byte (or 32-byte with address fields) multiboot header. */
export function multibootHeader(flags: number, addrs?: { header: number; load: number; loadEnd: number; bssEnd: number; entry: number }): Uint8Array {
  const h = new Uint8Array(addrs ? 32 : 12);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0x1bad_b002, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, (-(0x1bad_b002 + flags)) >>> 0, true);
  if (addrs) {
    v.setUint32(12, addrs.header, true);
    v.setUint32(16, addrs.load, true);
    v.setUint32(20, addrs.loadEnd, true);
    v.setUint32(24, addrs.bssEnd, true);
    v.setUint32(28, addrs.entry, true);
  }
  return h;
}
