/**
 * A tiny AML (ACPI Machine Language, ACPI spec chapter 20) encoder: just what our DSDT needs —
 * names, packages, integers, strings, buffers, Scope/Device, and ResourceTemplate descriptors
 * (ACPI spec 6.4). Each function returns the encoded bytes; compose them with arrays.
 */
import { BootError } from '../errors.js';

// Opcodes (ACPI 6.5 section 20.3).
const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const METHOD_OP = 0x14;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const ROOT_CHAR = 0x5c; // '\'
const PARENT_PREFIX = 0x5e; // '^'
const RETURN_OP = 0xa4;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82; // after EXT_OP_PREFIX

export type AmlPart = Uint8Array | readonly number[];

export function concat(parts: readonly AmlPart[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * PkgLength for a payload of `len` bytes: the encoded length counts its own bytes. One byte
 * holds up to 63; otherwise bits 7-6 of the lead byte give the number of following bytes (1-3),
 * its low nibble the low 4 bits, and the following bytes the rest.
 */
export function pkgLength(len: number): Uint8Array {
  if (len + 1 <= 0x3f) return Uint8Array.of(len + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = len + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0xf);
      for (let i = 1; i <= extra; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new BootError(`AML package of ${len} bytes is too long (PkgLength holds at most 2^28 - 1)`);
}

function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new BootError(`AML name segment "${seg}" is invalid (1-4 of A-Z, 0-9, _; not starting with a digit)`);
  return [...seg.padEnd(4, '_')].map((c) => c.charCodeAt(0));
}

/** NameString: "\\_SB.PCI0", "_HID", "^PCI0"... */
export function nameString(path: string): Uint8Array {
  const out: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    out.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      out.push(PARENT_PREFIX);
      rest = rest.slice(1);
    }
  }
  const segs = rest === '' ? [] : rest.split('.');
  if (segs.length === 0) out.push(ZERO_OP); // NullName
  else if (segs.length === 1) out.push(...nameSeg(segs[0]!));
  else if (segs.length === 2) out.push(DUAL_NAME_PREFIX, ...nameSeg(segs[0]!), ...nameSeg(segs[1]!));
  else {
    if (segs.length > 255) throw new BootError('AML name path has more than 255 segments');
    out.push(MULTI_NAME_PREFIX, segs.length, ...segs.flatMap(nameSeg));
  }
  return Uint8Array.from(out);
}

/** The shortest integer encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
export function integer(value: number | bigint): Uint8Array {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new BootError(`AML integer ${v} is out of range (0 .. 2^64-1)`);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  const le = (bytes: number): number[] => Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
  if (v <= 0xffn) return Uint8Array.of(BYTE_PREFIX, ...le(1));
  if (v <= 0xffffn) return Uint8Array.of(WORD_PREFIX, ...le(2));
  if (v <= 0xffff_ffffn) return Uint8Array.of(DWORD_PREFIX, ...le(4));
  return Uint8Array.of(QWORD_PREFIX, ...le(8));
}

/** String constant (ASCII, NUL-terminated). */
export function string(s: string): Uint8Array {
  if (!/^[\x01-\x7f]*$/.test(s)) throw new BootError(`AML string "${s}" must be ASCII without NUL`);
  return concat([[STRING_PREFIX], [...s].map((c) => c.charCodeAt(0)), [0]]);
}

/** EISA ID ("PNP0A03") compressed into a DWord, as EisaId() in ASL. */
export function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new BootError(`EISA ID "${id}" must be 3 letters and 4 hex digits`);
  const c = (i: number): number => (id.charCodeAt(i) - 0x40) & 0x1f;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  const swap16 = (x: number): number => ((x & 0xff) << 8) | (x >> 8);
  return integer((swap16(vendor) | (swap16(product) << 16)) >>> 0);
}

/** Name(path, value). */
export function name(path: string, value: AmlPart): Uint8Array {
  return concat([[NAME_OP], nameString(path), value]);
}

/** Package(n) { elements } — each element an encoded data object. */
export function pkg(elements: readonly AmlPart[]): Uint8Array {
  if (elements.length > 255) throw new BootError('AML Package has more than 255 elements');
  const body = concat([[elements.length], ...elements]);
  return concat([[PACKAGE_OP], pkgLength(body.length), body]);
}

/** Buffer() { bytes }. */
export function buffer(bytes: AmlPart): Uint8Array {
  const body = concat([integer(bytes.length), bytes]);
  return concat([[BUFFER_OP], pkgLength(body.length), body]);
}

export function scope(path: string, body: readonly AmlPart[]): Uint8Array {
  const inner = concat([nameString(path), ...body]);
  return concat([[SCOPE_OP], pkgLength(inner.length), inner]);
}

export function device(path: string, body: readonly AmlPart[]): Uint8Array {
  const inner = concat([nameString(path), ...body]);
  return concat([[EXT_OP_PREFIX, DEVICE_OP], pkgLength(inner.length), inner]);
}

/** Method(path, argCount, NotSerialized) { body }. */
export function method(path: string, argCount: number, body: readonly AmlPart[]): Uint8Array {
  if (argCount < 0 || argCount > 7) throw new BootError('AML methods take 0 to 7 arguments');
  const inner = concat([nameString(path), [argCount & 7], ...body]);
  return concat([[METHOD_OP], pkgLength(inner.length), inner]);
}

/** Return(value). */
export function ret(value: AmlPart): Uint8Array {
  return concat([[RETURN_OP], value]);
}

// ---- resource descriptors (ACPI 6.4 section 6.4) ------------------------------------------------

const u16 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff];
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** General flags for an address-space descriptor: ResourceProducer, PosDecode, MinFixed, MaxFixed. */
const ADDR_PRODUCER_FIXED = 0x0c;
const ADDR_SPACE_MEMORY = 0;
const ADDR_SPACE_IO = 1;
const ADDR_SPACE_BUS = 2;
/** I/O type-specific flags: EntireRange. */
const IO_ENTIRE_RANGE = 0x03;
/** Memory type-specific flags: ReadWrite (bit 0); caching in bits 1-2. */
const MEM_READ_WRITE = 0x01;
const MEM_NON_CACHEABLE = 0 << 1;

/** IO(Decode16, min, max, align, length): small descriptor 0x47. */
export function ioPort(min: number, max: number, align: number, length: number): number[] {
  return [0x47, 0x01, ...u16(min), ...u16(max), align & 0xff, length & 0xff];
}

/** IRQNoFlags() { irqs } (edge, active high, exclusive): small descriptor 0x22. */
export function irqNoFlags(irqs: readonly number[]): number[] {
  let mask = 0;
  for (const i of irqs) {
    if (i < 0 || i > 15) throw new BootError(`IRQ descriptor holds ISA IRQs 0-15, not ${i}`);
    mask |= 1 << i;
  }
  return [0x22, ...u16(mask)];
}

function wordAddress(type: number, typeFlags: number, min: number, max: number): number[] {
  return [0x88, ...u16(13), type, ADDR_PRODUCER_FIXED, typeFlags, ...u16(0), ...u16(min), ...u16(max), ...u16(0), ...u16(max - min + 1)];
}

/** WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, len). */
export function wordBusNumber(min: number, max: number): number[] {
  return wordAddress(ADDR_SPACE_BUS, 0, min, max);
}

/** WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, len). */
export function wordIo(min: number, max: number): number[] {
  return wordAddress(ADDR_SPACE_IO, IO_ENTIRE_RANGE, min, max);
}

/** DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, len). */
export function dwordMemory(min: number, max: number): number[] {
  return [
    0x87,
    ...u16(23),
    ADDR_SPACE_MEMORY,
    ADDR_PRODUCER_FIXED,
    MEM_READ_WRITE | MEM_NON_CACHEABLE,
    ...u32(0),
    ...u32(min),
    ...u32(max),
    ...u32(0),
    ...u32(max - min + 1),
  ];
}

/** ResourceTemplate() { descriptors }: a Buffer ending in an End Tag (checksum 0 = "valid"). */
export function resourceTemplate(descriptors: readonly AmlPart[]): Uint8Array {
  return buffer(concat([...descriptors, [0x79, 0x00]]));
}
