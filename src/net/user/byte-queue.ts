/**
 * A FIFO of bytes kept as the chunks they arrived in (no copying on push): the host-to-guest
 * bytes of a TCP connection that the guest has not acknowledged yet.
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already dropped. */
  private headOffset = 0;
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Forget the first `n` bytes (n <= length). */
  drop(n: number): void {
    n = Math.min(n, this.length);
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const left = c.length - this.headOffset;
      if (n < left) {
        this.headOffset += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }

  /** Copy `len` bytes starting `offset` bytes into the queue to `dst[at...]`. */
  copyTo(dst: Uint8Array, at: number, offset: number, len: number): void {
    let skip = offset + this.headOffset;
    for (const c of this.chunks) {
      if (len === 0) return;
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const n = Math.min(len, c.length - skip);
      dst.set(c.subarray(skip, skip + n), at);
      at += n;
      len -= n;
      skip = 0;
    }
  }

  clear(): void {
    this.chunks = [];
    this.headOffset = 0;
    this.length = 0;
  }
}
