/**
 * The qcow2 header (QEMU's docs/interop/qcow2.txt, versions 2 and 3): parsing it from an
 * untrusted file, and writing the header of a new, empty image.
 *
 * Everything read from the file is checked before it is used: offsets against the file's size
 * and alignment, sizes against fixed bounds (QEMU's own implementation limits: an L1 table of at
 * most 32 MiB, a refcount table of at most 8 MiB), 64-bit values against what a JavaScript
 * number holds exactly. A file that fails a check is refused with one Qcow2Error that names the
 * file and says what to do; nothing else escapes.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

export class Qcow2Error extends Error {
  override name = 'Qcow2Error';
}

/** "QFI\xfb" */
export const QCOW2_MAGIC = 0x514649fb;
/** Cluster sizes 512 B .. 2 MiB (the spec's minimum, QEMU's implementation limit). */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QEMU's limits, which also bound what we allocate for an image we are handed. */
export const MAX_L1_BYTES = 32 << 20;
export const MAX_REFCOUNT_TABLE_BYTES = 8 << 20;
const MAX_BACKING_NAME = 1023;
const V2_HEADER_LENGTH = 72;
const V3_MIN_HEADER_LENGTH = 104;
/** Header length we write: through compression_type (byte 104), padded to a multiple of 8. */
const V3_HEADER_LENGTH = 112;

// Header extension types.
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAMES = 0x6803f857;
/** Feature name table entry: type (1), bit (1), name (46). */
const FEATURE_ENTRY = 48;

// incompatible_features bits.
const INCOMPAT_DIRTY = 0;
const INCOMPAT_CORRUPT = 1;
const INCOMPAT_DATA_FILE = 2;
const INCOMPAT_COMPRESSION = 3;
const INCOMPAT_EXTENDED_L2 = 4;
const KNOWN_INCOMPAT_NAMES = ['dirty bit', 'corrupt bit', 'external data file', 'compression type', 'extended L2 entries'];

/** compression_type values. */
const COMPRESSION_ZLIB = 0;
const COMPRESSION_ZSTD = 1;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** Virtual disk size in bytes, as stored. */
  size: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  /** Bytes of the fixed header (72 for v2). */
  headerLength: number;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  /** The backing file's name as stored (not resolved), if any. */
  backingFile?: string;
  /** From the backing format header extension. */
  backingFormat?: string;
}

/** The first bytes of the file, or of any file, say whether it is qcow2. */
export function hasQcow2Magic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0) === QCOW2_MAGIC;
}

/** The refusal for a malformed image. */
export function corrupt(image: string, what: string): Qcow2Error {
  return new Qcow2Error(`${image} is not a usable qcow2 image: ${what}. The image is damaged or truncated: check it with qemu-img check ${image}`);
}

/**
 * Read and validate the header of the qcow2 image open on `fd` (`fileSize` bytes). Reads at most
 * one cluster (2 MiB) plus the backing file name.
 */
export function readQcow2Header(fd: number, fileSize: number, image: string): Qcow2Header {
  const readAt = (pos: number, len: number): Uint8Array => {
    const b = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const n = readSync(fd, b, got, len - got, pos + got);
      if (n === 0) break;
      got += n;
    }
    return b.subarray(0, got);
  };
  const first = readAt(0, Math.min(fileSize, 1 << MAX_CLUSTER_BITS));
  return parseQcow2Header(first, fileSize, image, readAt);
}

/**
 * Parse the header from `first` (the file's first bytes, up to a whole first cluster or the whole
 * file if shorter); `readAt` reads other bytes (the backing file name may lie anywhere).
 */
export function parseQcow2Header(first: Uint8Array, fileSize: number, image: string, readAt: (pos: number, len: number) => Uint8Array): Qcow2Header {
  if (first.length < 8 || !hasQcow2Magic(first)) throw new Qcow2Error(`${image} is not a qcow2 image (no "QFI\\xfb" magic at offset 0)`);
  const dv = new DataView(first.buffer, first.byteOffset, first.byteLength);
  const version = dv.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new Qcow2Error(`${image} is qcow2 version ${version}; only versions 2 and 3 are supported: convert it with qemu-img convert -O qcow2`);
  }
  if (first.length < V2_HEADER_LENGTH) throw corrupt(image, `the file is ${fileSize} bytes, shorter than a qcow2 header`);

  const u64 = (at: number, what: string): number => {
    const v = dv.getBigUint64(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(image, `${what} (0x${v.toString(16)}) is out of range`);
    return Number(v);
  };

  const clusterBits = dv.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw corrupt(image, `cluster_bits is ${clusterBits}; it must be ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS} (512 B to 2 MiB clusters)`);
  }
  const clusterSize = 2 ** clusterBits;

  const cryptMethod = dv.getUint32(32);
  if (cryptMethod !== 0) {
    throw new Qcow2Error(`${image}: encrypted qcow2 images are not supported (crypt_method ${cryptMethod}${cryptMethod === 1 ? ', AES' : cryptMethod === 2 ? ', LUKS' : ''}): decrypt it with qemu-img convert -O qcow2 (with --object secret,...) first`);
  }

  let headerLength = V2_HEADER_LENGTH;
  let incompatible = 0n;
  let compatible = 0n;
  let autoclear = 0n;
  let refcountOrder = 4;
  let compressionType = COMPRESSION_ZLIB;
  if (version === 3) {
    if (first.length < V3_MIN_HEADER_LENGTH) throw corrupt(image, `the file is ${fileSize} bytes, shorter than a version 3 header`);
    headerLength = dv.getUint32(100);
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > Math.min(clusterSize, first.length)) {
      throw corrupt(image, `header_length ${headerLength} is invalid (a multiple of 8, at least ${V3_MIN_HEADER_LENGTH}, inside the first cluster)`);
    }
    incompatible = dv.getBigUint64(72);
    compatible = dv.getBigUint64(80);
    autoclear = dv.getBigUint64(88);
    refcountOrder = dv.getUint32(96);
    if (headerLength > 104) compressionType = first[104]!;
  }

  // Header extensions: after the fixed header, inside the first cluster, before the backing name.
  const backingOffsetRaw = dv.getBigUint64(8);
  let extEnd = Math.min(clusterSize, first.length);
  if (backingOffsetRaw > BigInt(headerLength) && backingOffsetRaw < BigInt(extEnd)) extEnd = Number(backingOffsetRaw);
  let backingFormat: string | undefined;
  const featureNames = new Map<string, string>();
  for (let at = headerLength; at + 8 <= extEnd; ) {
    const type = dv.getUint32(at);
    const len = dv.getUint32(at + 4);
    if (type === EXT_END) break;
    const data = at + 8;
    if (len > extEnd - data) throw corrupt(image, `header extension 0x${type.toString(16)} at offset ${at} (${len} bytes) runs past the end of the header area`);
    if (type === EXT_BACKING_FORMAT && backingFormat === undefined) {
      backingFormat = new TextDecoder().decode(first.subarray(data, data + len));
    } else if (type === EXT_FEATURE_NAMES) {
      for (let e = data; e + FEATURE_ENTRY <= data + len; e += FEATURE_ENTRY) {
        const name = first.subarray(e + 2, e + FEATURE_ENTRY);
        const nul = name.indexOf(0);
        featureNames.set(`${first[e]}:${first[e + 1]}`, new TextDecoder().decode(nul < 0 ? name : name.subarray(0, nul)));
      }
    }
    at = data + Math.ceil(len / 8) * 8;
  }

  // Incompatible features: the ones we cannot honour are refused, each with what to do.
  const has = (bit: number): boolean => (incompatible & (1n << BigInt(bit))) !== 0n;
  if (has(INCOMPAT_DIRTY)) {
    throw new Qcow2Error(`${image} was not closed cleanly (its dirty bit is set, so its refcounts may be wrong): repair it with qemu-img check -r all ${image}`);
  }
  if (has(INCOMPAT_CORRUPT)) {
    throw new Qcow2Error(`${image} is marked corrupt by QEMU: repair it with qemu-img check -r all ${image}, or copy out what is readable with qemu-img convert`);
  }
  if (has(INCOMPAT_DATA_FILE)) {
    throw new Qcow2Error(`${image} keeps its data in an external data file, which is not supported: convert it with qemu-img convert -O qcow2 ${image} NEW.qcow2`);
  }
  if (has(INCOMPAT_COMPRESSION) || compressionType !== COMPRESSION_ZLIB) {
    if (!has(INCOMPAT_COMPRESSION) || compressionType === COMPRESSION_ZLIB) {
      throw corrupt(image, `the compression type bit and compression_type field (${compressionType}) disagree`);
    }
    const kind = compressionType === COMPRESSION_ZSTD ? 'zstd' : `compression type ${compressionType}`;
    throw new Qcow2Error(`${image} uses ${kind} compression; only deflate (zlib) compressed qcow2 images are supported: convert it with qemu-img convert -O qcow2 -o compression_type=zlib ${image} NEW.qcow2`);
  }
  if (has(INCOMPAT_EXTENDED_L2)) {
    throw new Qcow2Error(`${image} uses extended L2 entries (subclusters), which are not supported: convert it with qemu-img convert -O qcow2 ${image} NEW.qcow2`);
  }
  const unknown: string[] = [];
  for (let bit = KNOWN_INCOMPAT_NAMES.length; bit < 64; bit++) {
    if (has(bit)) unknown.push(featureNames.has(`0:${bit}`) ? `"${featureNames.get(`0:${bit}`)}" (bit ${bit})` : `bit ${bit}`);
  }
  if (unknown.length > 0) {
    throw new Qcow2Error(`${image} needs qcow2 features typevisor does not know: incompatible feature ${unknown.join(', ')}: convert it with a qemu-img that knows them (qemu-img convert -O qcow2 -o compat=1.1)`);
  }
  if (refcountOrder !== 4) {
    throw new Qcow2Error(`${image} has ${2 ** Math.min(refcountOrder, 31)}-bit refcounts (refcount_order ${refcountOrder}); only the default 16-bit refcounts are supported: convert it with qemu-img convert -O qcow2 -o refcount_bits=16`);
  }

  // Size and tables.
  const size = u64(24, 'the disk size');
  const l2Entries = clusterSize / 8;
  const l1Size = dv.getUint32(36);
  const l1Offset = u64(40, 'the L1 table offset');
  const l1Needed = Math.ceil(size / clusterSize / l2Entries);
  if (l1Size < l1Needed) throw corrupt(image, `its L1 table has ${l1Size} entries; a ${size}-byte disk needs ${l1Needed}`);
  if (l1Size * 8 > MAX_L1_BYTES) throw corrupt(image, `its L1 table (${l1Size} entries) is larger than ${MAX_L1_BYTES >> 20} MiB`);
  if (l1Size > 0 && (l1Offset === 0 || l1Offset % clusterSize !== 0 || l1Offset + l1Size * 8 > fileSize)) {
    throw corrupt(image, `its L1 table (offset ${l1Offset}, ${l1Size} entries) is not cluster-aligned or lies outside the ${fileSize}-byte file`);
  }
  const refcountTableOffset = u64(48, 'the refcount table offset');
  const refcountTableClusters = dv.getUint32(56);
  if (refcountTableClusters === 0 || refcountTableClusters * clusterSize > MAX_REFCOUNT_TABLE_BYTES) {
    throw corrupt(image, `its refcount table has ${refcountTableClusters} clusters (1..${MAX_REFCOUNT_TABLE_BYTES / clusterSize} allowed)`);
  }
  if (refcountTableOffset === 0 || refcountTableOffset % clusterSize !== 0 || refcountTableOffset + refcountTableClusters * clusterSize > fileSize) {
    throw corrupt(image, `its refcount table (offset ${refcountTableOffset}, ${refcountTableClusters} clusters) is not cluster-aligned or lies outside the ${fileSize}-byte file`);
  }
  const nbSnapshots = dv.getUint32(60);

  // The backing file name.
  let backingFile: string | undefined;
  if (backingOffsetRaw !== 0n) {
    const backingOffset = u64(8, 'the backing file name offset');
    const len = dv.getUint32(16);
    if (len === 0 || len > MAX_BACKING_NAME) throw corrupt(image, `its backing file name is ${len} bytes (1..${MAX_BACKING_NAME} allowed)`);
    if (backingOffset + len > fileSize) throw corrupt(image, `its backing file name (offset ${backingOffset}, ${len} bytes) lies outside the ${fileSize}-byte file`);
    const name = readAt(backingOffset, len);
    if (name.length !== len) throw corrupt(image, 'its backing file name could not be read in full');
    if (name.includes(0)) throw corrupt(image, 'its backing file name contains a NUL byte');
    backingFile = new TextDecoder().decode(name);
  }

  return {
    version,
    clusterBits,
    clusterSize,
    size,
    l1Size,
    l1Offset,
    refcountTableOffset,
    refcountTableClusters,
    nbSnapshots,
    headerLength,
    compatible,
    autoclear,
    refcountOrder,
    backingFile,
    backingFormat,
  };
}

export interface CreateQcow2Options {
  /** Virtual disk size in bytes (rounded up to whole 512-byte sectors). */
  size: number;
  /** Backing file name as stored: absolute, or relative to the new image's directory. */
  backingFile?: string;
  backingFormat?: 'raw' | 'qcow2';
  /** Default 16 (64 KiB clusters, QEMU's default). */
  clusterBits?: number;
}

/**
 * Write a new, empty version 3 qcow2 image at `path` (which must not exist). Layout: header (+
 * extensions + backing name) in cluster 0, refcount table in cluster 1, one refcount block in
 * cluster 2, the L1 table from cluster 3; every one of those clusters has refcount 1.
 */
export function createQcow2(path: string, options: CreateQcow2Options): void {
  const clusterBits = options.clusterBits ?? 16;
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new Qcow2Error(`cannot create ${path}: cluster_bits must be ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}, not ${clusterBits}`);
  }
  const cs = 2 ** clusterBits;
  if (!Number.isSafeInteger(options.size) || options.size < 0) throw new Qcow2Error(`cannot create ${path}: invalid size ${options.size}`);
  const size = Math.ceil(options.size / 512) * 512;
  const l1Size = Math.ceil(size / cs / (cs / 8));
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const refcountBlockEntries = cs / 2;
  const clusters = 3 + l1Clusters;
  if (l1Size * 8 > MAX_L1_BYTES || clusters > refcountBlockEntries) {
    throw new Qcow2Error(`cannot create ${path}: a ${size}-byte disk is too large for ${cs}-byte clusters: use a larger cluster size`);
  }

  const header = new Uint8Array(cs);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, QCOW2_MAGIC);
  dv.setUint32(4, 3);
  dv.setUint32(20, clusterBits);
  dv.setBigUint64(24, BigInt(size));
  dv.setUint32(36, l1Size);
  dv.setBigUint64(40, BigInt(3 * cs));
  dv.setBigUint64(48, BigInt(cs));
  dv.setUint32(56, 1);
  dv.setUint32(96, 4); // refcount_order: 16-bit refcounts
  dv.setUint32(100, V3_HEADER_LENGTH);
  let at = V3_HEADER_LENGTH;
  const enc = new TextEncoder();
  if (options.backingFormat !== undefined) {
    const fmt = enc.encode(options.backingFormat);
    dv.setUint32(at, EXT_BACKING_FORMAT);
    dv.setUint32(at + 4, fmt.length);
    header.set(fmt, at + 8);
    at += 8 + Math.ceil(fmt.length / 8) * 8;
  }
  at += 8; // EXT_END: type 0, length 0
  if (options.backingFile !== undefined) {
    const name = enc.encode(options.backingFile);
    if (name.length === 0 || name.length > MAX_BACKING_NAME || name.includes(0)) {
      throw new Qcow2Error(`cannot create ${path}: the backing file name must be 1..${MAX_BACKING_NAME} bytes without NUL`);
    }
    if (at + name.length > cs) throw new Qcow2Error(`cannot create ${path}: the backing file name does not fit in a ${cs}-byte header cluster: use a larger cluster size or a shorter name`);
    dv.setBigUint64(8, BigInt(at));
    dv.setUint32(16, name.length);
    header.set(name, at);
  }

  const refcountTable = new Uint8Array(cs);
  new DataView(refcountTable.buffer).setBigUint64(0, BigInt(2 * cs));
  const refcountBlock = new Uint8Array(cs);
  const rb = new DataView(refcountBlock.buffer);
  for (let c = 0; c < clusters; c++) rb.setUint16(c * 2, 1);

  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (e) {
    throw new Qcow2Error(`cannot create qcow2 image ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const put = (bytes: Uint8Array, pos: number): void => {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, pos + done);
    };
    put(header, 0);
    put(refcountTable, cs);
    put(refcountBlock, 2 * cs);
    put(new Uint8Array(l1Clusters * cs), 3 * cs);
  } catch (e) {
    throw new Qcow2Error(`cannot write qcow2 image ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

/** The virtual size of an image file: a qcow2's disk size, else the raw file's length. */
export function probeImageSize(path: string): { format: 'raw' | 'qcow2'; size: number } {
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    const magic = new Uint8Array(4);
    readSync(fd, magic, 0, 4, 0);
    if (hasQcow2Magic(magic)) return { format: 'qcow2', size: readQcow2Header(fd, fileSize, path).size };
    return { format: 'raw', size: fileSize };
  } finally {
    closeSync(fd);
  }
}
