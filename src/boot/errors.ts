/**
 * The boot module's one error class. Every refusal to load a kernel (unknown format, a header
 * field out of range, a segment outside RAM, an initrd that does not fit) is a BootError whose
 * message says what is wrong and what to do about it.
 */
export class BootError extends Error {
  override name = 'BootError';
}

/** `0x1234` formatting for messages. */
export const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Bytes as MiB with one decimal, for messages. */
export const mib = (n: number): string => {
  const v = n / (1024 * 1024);
  return Number.isInteger(v) ? `${v} MiB` : `${v.toFixed(1)} MiB`;
};
