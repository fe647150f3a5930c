/**
 * Extract the ELF vmlinux from a bzImage on the host, so a kernel can be started at its
 * uncompressed entry point (skipping the in-guest decompressor, which is slow on the software
 * CPU). The compressed payload is found through the setup header's payload_offset /
 * payload_length (boot protocol 2.08+). LZ4 (Debian's cloud kernel) is decoded here in
 * TypeScript; other formats need a decompressor callback (e.g. node:zlib's gunzipSync for
 * gzip, passed in from host-side code, since src/boot runs without node:* modules).
 */
import { parseBzImageHeader } from './bzimage.js';
import { BootError, mib } from './errors.js';
import { isElf } from './elf.js';
import { lz4DecodeLegacy } from './lz4.js';
import { leadingBytes, payloadFormat, type PayloadFormat } from './payload.js';

export { payloadFormat, type PayloadFormat } from './payload.js';

/** Host-side decompressor: returns the decompressed bytes, at most maxOutput of them. */
export type Decompressor = (payload: Uint8Array, maxOutput: number) => Uint8Array;

/** Default cap on the decompressed kernel. */
export const DEFAULT_MAX_VMLINUX_SIZE = 512 * 1024 * 1024;

/**
 * The compressed payload of a bzImage (a borrowed view into `image`) and its format. The header
 * parse has already refused a payload that runs past the end of the file or whose format is
 * not recognised.
 */
export function bzImagePayload(image: Uint8Array): { data: Uint8Array; format: PayloadFormat } {
  const hdr = parseBzImageHeader(image);
  if (hdr.version < 0x0208 || hdr.payloadLength === 0) {
    throw new BootError('bzImage has no payload_offset/payload_length (boot protocol 2.08+): cannot extract vmlinux from this kernel; boot the bzImage directly');
  }
  const start = hdr.kernelOffset + hdr.payloadOffset;
  const end = start + hdr.payloadLength;
  const data = image.subarray(start, end);
  return { data, format: payloadFormat(data) };
}

export interface ExtractOptions {
  maxOutput?: number;
  /** Decompressors for formats other than LZ4 (and to override LZ4). */
  decompressors?: Partial<Record<PayloadFormat, Decompressor>>;
}

/** Decompress a bzImage's payload and return the ELF vmlinux bytes (plus any trailing relocation data). */
export function extractVmlinux(image: Uint8Array, opts: ExtractOptions = {}): Uint8Array {
  const maxOutput = opts.maxOutput ?? DEFAULT_MAX_VMLINUX_SIZE;
  const { data, format } = bzImagePayload(image);
  const custom = opts.decompressors?.[format];
  let out: Uint8Array;
  if (custom) {
    out = custom(data, maxOutput);
    if (out.length > maxOutput) throw new BootError(`decompressed kernel is ${mib(out.length)}, above the ${mib(maxOutput)} limit`);
  } else if (format === 'lz4') {
    // Linux appends the uncompressed size (u32) to every compressed payload.
    const hint = data.length >= 4 ? new DataView(data.buffer, data.byteOffset + data.length - 4, 4).getUint32(0, true) : undefined;
    out = lz4DecodeLegacy(data, { maxOutput, sizeHint: hint });
  } else if (format === 'elf') {
    out = data.slice();
  } else if (format === 'unknown') {
    // parseBzImageHeader refuses these; kept for a caller that hands over a damaged image anyway.
    throw new BootError(
      `bzImage payload's compression format is not recognised (it starts ${leadingBytes(data)}): the file is damaged or is not a Linux kernel`,
    );
  } else {
    throw new BootError(
      `bzImage payload is ${format}-compressed and typevisor decompresses only LZ4 itself: boot the bzImage directly (without --vmlinux), ` +
        `or give extractVmlinux a ${format} decompressor`,
    );
  }
  if (!isElf(out)) throw new BootError(`decompressed ${format} payload is not an ELF file: the image is damaged`);
  return out;
}
