/**
 * virtio-rng, the entropy device (virtio 1.2, 5.4): one queue (requestq) of device-writable
 * buffers, each filled with random bytes from the host's CSPRNG and returned. No feature bits,
 * no configuration space.
 *
 * The random source is injected (`fillRandom`): the host side (src/vmm) passes Node's CSPRNG, a
 * browser would pass `crypto.getRandomValues`; it is called with at most 65536 bytes at a time
 * (Web Crypto's limit). A request is served up to `MAX_REQUEST_BYTES` (the device may return
 * fewer bytes than the buffer holds), so a guest cannot make the host generate gigabytes.
 */
import type { GuestMemory } from '../../../machine/memory.js';
import { VIRTIO_ID_RNG, type VirtioDevice, type VirtioTransport } from '../device.js';
import { DescriptorChain } from '../queue/queue.js';

export const RNG_QUEUE_SIZE = 64;
/** Most bytes one request gets. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Most bytes one fillRandom call gets (crypto.getRandomValues throws above this). */
export const MAX_FILL_BYTES = 65536;
/** PCI class: unclassified device, "other" (what QEMU's virtio-rng-pci shows). */
const PCI_CLASS_OTHER = 0x00ff00;

export interface EntropyOptions {
  /** Fill `bytes` (at most MAX_FILL_BYTES) with cryptographically secure random bytes. */
  fillRandom: (bytes: Uint8Array) => void;
}

/** Snapshot state of virtio-rng: none of its own. */
export type EntropyState = Record<string, never>;

export class EntropyDevice implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly pciClass = PCI_CLASS_OTHER;
  readonly queueSizes = [RNG_QUEUE_SIZE] as const;
  readonly features = 0n;
  readonly configSize = 0;
  private transport: VirtioTransport | undefined;
  private readonly chain = new DescriptorChain(4);
  private readonly fillRandom: (bytes: Uint8Array) => void;
  /** Bytes handed to the guest, requests served, and requests with nothing writable. */
  bytesServed = 0;
  requestsServed = 0;
  emptyRequests = 0;

  constructor(opts: EntropyOptions) {
    this.fillRandom = opts.fillRandom;
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(): number {
    return 0;
  }
  writeConfig(): void {}
  activate(): void {}
  reset(): void {}

  /** Snapshot: the device keeps nothing between requests (its queue is the transport's). */
  save(): EntropyState {
    return {};
  }
  restore(_s: EntropyState): void {}

  notify(index: number): void {
    const t = this.transport;
    if (!t || index !== 0) return;
    const q = t.queue(0);
    const mem = t.memory;
    const chain = this.chain;
    let served = false;
    while (true) {
      const r = q.pop(mem, chain);
      if (r === false) break;
      if (r !== true) {
        t.fail(r);
        return;
      }
      let budget = MAX_REQUEST_BYTES;
      let written = 0;
      for (let i = chain.readable; i < chain.count && budget > 0; i++) {
        const n = Math.min(chain.len[i]!, budget);
        this.fill(mem, chain.addr[i]!, n);
        written += n;
        budget -= n;
      }
      if (written === 0) this.emptyRequests++;
      this.bytesServed += written;
      this.requestsServed++;
      q.pushUsed(mem, chain.head, written);
      served = true;
    }
    if (served) t.usedBuffers(0);
  }

  /** Random bytes straight into guest RAM (checked by the queue), region by region. */
  private fill(mem: GuestMemory, addr: number, len: number): void {
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const r = mem.regionOf(a);
      if (!r) return; // cannot happen: the queue checked the buffer
      const n = Math.min(len - done, r.base + r.size - a, MAX_FILL_BYTES);
      this.fillRandom(r.bytes.subarray(a - r.base, a - r.base + n));
      mem.dmaWritten(a, n);
      done += n;
    }
  }
}
