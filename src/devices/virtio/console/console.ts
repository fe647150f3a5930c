/**
 * virtio-console (virtio 1.2, 5.3) with one port and no multiport control: queue 0 (receiveq)
 * carries host input into buffers the driver posts, queue 1 (transmitq) carries the guest's
 * output. Linux names it hvc0 (`console=hvc0`).
 *
 * Input is flow-controlled like the UART's: `receive(bytes)` takes only what fits in the receive
 * buffers the driver has posted and says how many bytes it took; `onRxSpace` fires when the
 * driver posts more, so the host console sends the rest then. Nothing is queued inside the
 * device, so a guest that never reads cannot make it grow. Input waits, too, until the guest
 * has written to the console once: Linux posts its receive buffers before it marks the port
 * connected and throws away whatever arrives in between (virtio_console.c, in_intr), and its
 * first output (the kernel log replayed to hvc0, or a prompt) comes after that point.
 * Output is copied out of guest memory
 * chain by chain (at most OUTPUT_CHAIN_MAX bytes of a chain) and handed to `output`.
 */
import { VIRTIO_ID_CONSOLE, bit, type VirtioDevice, type VirtioTransport } from '../device.js';
import { DescriptorChain } from '../queue/queue.js';

export const CONSOLE_QUEUE_SIZE = 64;
export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
/** VIRTIO_CONSOLE_F_SIZE: the configuration holds the console's columns and rows. */
export const VIRTIO_CONSOLE_F_SIZE = 0n;
/** Most bytes of one transmit chain passed on (a chain is normally a page or less). */
export const OUTPUT_CHAIN_MAX = 64 * 1024;
/** PCI class: simple communication controller, other (what QEMU's virtio-serial-pci shows). */
const PCI_CLASS_COMM_OTHER = 0x078000;

export interface ConsoleOptions {
  /** The guest's output (a borrowed view: copy it to keep it). */
  output: (bytes: Uint8Array) => void;
  /** Terminal size in the configuration space (VIRTIO_CONSOLE_F_SIZE), when known. */
  size?: { cols: number; rows: number };
}

/** Snapshot state of virtio-console (its queues are the transport's). */
export interface ConsoleState {
  live: boolean;
  cols: number;
  rows: number;
}

export class VirtioConsole implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_CONSOLE;
  readonly pciClass = PCI_CLASS_COMM_OTHER;
  readonly queueSizes = [CONSOLE_QUEUE_SIZE, CONSOLE_QUEUE_SIZE] as const;
  readonly features: bigint;
  /** cols u16, rows u16, max_nr_ports u32, emerg_wr u32 (5.3.4). */
  readonly configSize = 12;
  private transport: VirtioTransport | undefined;
  private readonly rxChain = new DescriptorChain(4);
  private readonly txChain = new DescriptorChain(4);
  private readonly scratch = new Uint8Array(OUTPUT_CHAIN_MAX);
  private rxSpace: (() => void) | undefined;
  /** The guest has written to the console: its port is connected, input may go in. */
  private live = false;
  private cols = 0;
  private rows = 0;
  /** Bytes passed each way (statistics). */
  bytesIn = 0;
  bytesOut = 0;

  constructor(private readonly opts: ConsoleOptions) {
    this.features = opts.size ? bit(VIRTIO_CONSOLE_F_SIZE) : 0n;
    if (opts.size) this.resize(opts.size.cols, opts.size.rows);
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  /** The host terminal changed size (with VIRTIO_CONSOLE_F_SIZE: a config-change interrupt). */
  resize(cols: number, rows: number): void {
    this.cols = Math.max(0, Math.min(0xffff, cols | 0));
    this.rows = Math.max(0, Math.min(0xffff, rows | 0));
    if (this.features !== 0n) this.transport?.configChanged();
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    const b = new Uint8Array(this.configSize);
    const v = new DataView(b.buffer);
    v.setUint16(0, this.cols, true);
    v.setUint16(2, this.rows, true);
    v.setUint32(4, 1, true); // max_nr_ports (meaningful only with MULTIPORT)
    if (offset < 0 || offset + size > this.configSize) return 0;
    return size === 1 ? v.getUint8(offset) : size === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // emerg_wr (offset 8): one character written early, before the queues work
    if (offset === 8 && size === 4) this.emit(new Uint8Array([value & 0xff]));
  }

  activate(): void {}

  reset(): void {
    this.live = false;
  }

  /** Snapshot: whether the guest's port is connected, and the size in the configuration. */
  save(): ConsoleState {
    return { live: this.live, cols: this.cols, rows: this.rows };
  }

  /** Snapshot restore (`s` validated by the caller): no interrupt, no input offered yet. */
  restore(s: ConsoleState): void {
    this.live = s.live;
    this.cols = s.cols & 0xffff;
    this.rows = s.rows & 0xffff;
  }

  notify(index: number): void {
    if (index === TX_QUEUE) this.drainTx();
    else if (index === RX_QUEUE && this.live) this.rxSpace?.();
  }

  /** Register the callback for "the driver posted receive buffers" (at most one). */
  onRxSpace(listener: () => void): void {
    this.rxSpace = listener;
  }

  /** Offer host input; returns how many bytes the driver's posted buffers took. */
  receive(bytes: Uint8Array): number {
    const t = this.transport;
    if (!t || !this.live) return 0;
    const q = t.queue(RX_QUEUE);
    const mem = t.memory;
    const chain = this.rxChain;
    let taken = 0;
    let used = false;
    while (taken < bytes.length) {
      const r = q.pop(mem, chain);
      if (r === false) break;
      if (r !== true) {
        t.fail(r);
        return taken;
      }
      let n = 0;
      for (let i = chain.readable; i < chain.count && taken < bytes.length; i++) {
        const k = Math.min(chain.len[i]!, bytes.length - taken);
        mem.writeBytes(chain.addr[i]!, bytes.subarray(taken, taken + k));
        mem.dmaWritten(chain.addr[i]!, k);
        taken += k;
        n += k;
      }
      q.pushUsed(mem, chain.head, n);
      used = true;
    }
    this.bytesIn += taken;
    if (used) t.usedBuffers(RX_QUEUE);
    return taken;
  }

  private drainTx(): void {
    const t = this.transport;
    if (!t) return;
    const q = t.queue(TX_QUEUE);
    const mem = t.memory;
    const chain = this.txChain;
    let used = false;
    // every chain the driver made available now; the avail ring holds at most the queue size
    for (let budget = CONSOLE_QUEUE_SIZE * 4; budget > 0; budget--) {
      const r = q.pop(mem, chain);
      if (r === false) break;
      if (r !== true) {
        t.fail(r);
        return;
      }
      let n = 0;
      for (let i = 0; i < chain.readable && n < OUTPUT_CHAIN_MAX; i++) {
        const k = Math.min(chain.len[i]!, OUTPUT_CHAIN_MAX - n);
        mem.readInto(chain.addr[i]!, this.scratch.subarray(n, n + k));
        n += k;
      }
      if (n > 0) this.emit(this.scratch.subarray(0, n));
      q.pushUsed(mem, chain.head, 0);
      used = true;
    }
    if (used) t.usedBuffers(TX_QUEUE);
    if (used && !this.live) {
      // offer held input once the guest has run on past this point (a microtask runs when the
      // engine's slice ends, not inside this MMIO write)
      this.live = true;
      queueMicrotask(() => this.rxSpace?.());
    }
  }

  private emit(bytes: Uint8Array): void {
    this.bytesOut += bytes.length;
    this.opts.output(bytes);
  }
}
