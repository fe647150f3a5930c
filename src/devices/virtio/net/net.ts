/**
 * virtio-net, the network device (virtio 1.2, 5.1), one queue pair: receiveq (0) and transmitq
 * (1), no control queue. Every buffer starts with struct virtio_net_hdr (12 bytes with
 * VERSION_1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers).
 *
 * Offloads (offload.ts): with CSUM the driver may leave a transmitted frame's TCP/UDP checksum
 * partial (NEEDS_CSUM) and with HOST_TSO4 (offered only with `tso`) hand over TCP/IPv4 frames of
 * up to 64 KiB; the device
 * completes the checksum or cuts the frame into MTU-sized segments before the backend sees it,
 * so backends only ever get ordinary frames. A frame whose header does not add up is dropped and
 * counted. With GUEST_CSUM, frames from a backend that sums correctly (`rxChecksumsValid`: the
 * user network builds every frame itself) are marked DATA_VALID, so the guest skips verifying.
 * With GUEST_TSO4 (offered with `guestTso`, to a backend that builds large frames: the user
 * network) the backend may hand over one TCP/IPv4 frame of up to 64 KiB with its segment size
 * (`receive(frame, gsoSize)`, after `gsoMax()` said the driver takes them): the guest's stack
 * takes it as one segment, where 45 MTU-sized ones would cost it 45 interrupts, packets and ACKs.
 *
 * Receive uses VIRTIO_NET_F_MRG_RXBUF: a frame may fill several of the driver's buffers, and
 * num_buffers says how many. A frame is taken whole or not at all — `receive(frame)` returns
 * false when the posted buffers cannot hold it, and the backend keeps it and tries again when
 * `onRxSpace` fires (the driver posted buffers): the device never drops a frame it accepted and
 * never queues frames itself, so a guest that stops reading back-pressures the host side.
 * Transmit hands each frame (without the header) to `transmit`; frames are bounded by
 * MAX_FRAME. A backend that can fall behind (the kvm engine's relay to the main thread,
 * src/net/relay.ts) gives `txReady`: while it says false the device leaves the guest's
 * frames in the transmit queue, and `resumeTx()` carries on once it has room.
 */
import { bit, VIRTIO_ID_NET, type VirtioDevice, type VirtioTransport } from '../device.js';
import { DescriptorChain } from '../queue/queue.js';
import { completeChecksum, segmentTcp4, tcp4HeaderLength, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4 } from './offload.js';

// Feature bits (5.1.3)
export const VIRTIO_NET_F_CSUM = 0n;
export const VIRTIO_NET_F_GUEST_CSUM = 1n;
export const VIRTIO_NET_F_GUEST_TSO4 = 7n;
export const VIRTIO_NET_F_HOST_TSO4 = 11n;
export const VIRTIO_NET_F_MTU = 3n;
export const VIRTIO_NET_F_MAC = 5n;
export const VIRTIO_NET_F_MRG_RXBUF = 15n;
export const VIRTIO_NET_F_STATUS = 16n;
/** config.status: the link is up. */
export const VIRTIO_NET_S_LINK_UP = 1;

export const NET_HDR_SIZE = 12;
export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
export const NET_QUEUE_SIZE = 256;
/** Largest frame either way (an Ethernet header and a 64 KiB datagram). */
export const MAX_FRAME = 65550;
/** The MTU advertised to the guest (VIRTIO_NET_F_MTU). */
export const DEFAULT_MTU = 1500;
/** PCI class: network controller, Ethernet. */
const PCI_CLASS_ETHERNET = 0x020000;

export interface NetOptions {
  /** The guest's MAC address (6 bytes). */
  mac: Uint8Array;
  /** A frame the guest sent (a borrowed view: copy it to keep it). */
  transmit: (frame: Uint8Array) => void;
  /**
   * Whether `transmit` can take more now (asked before each of the guest's frames; absent:
   * always). After a false, the device takes no more until `resumeTx()`.
   */
  txReady?: () => boolean;
  mtu?: number;
  /** Frames from the backend carry correct checksums: mark them DATA_VALID (GUEST_CSUM). */
  rxChecksumsValid?: boolean;
  /**
   * Offer HOST_TSO4. Off by default: measured with busybox nc over --net user, the guest never
   * built a GSO frame (its 1 KiB writes go out one segment each) and throughput did not change.
   */
  tso?: boolean;
  /** Offer GUEST_TSO4 (with GUEST_CSUM): the backend builds correct large TCP/IPv4 frames (`receive(frame, gsoSize)`). */
  guestTso?: boolean;
}

/** Snapshot state of virtio-net: its configuration space (12 bytes). */
export interface NetState {
  config: number[];
}

export class VirtioNet implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly pciClass = PCI_CLASS_ETHERNET;
  readonly queueSizes = [NET_QUEUE_SIZE, NET_QUEUE_SIZE] as const;
  readonly features: bigint;
  /** mac[6], status le16, max_virtqueue_pairs le16, mtu le16. */
  readonly configSize = 12;
  private transport: VirtioTransport | undefined;
  private readonly config = new Uint8Array(12);
  private readonly rxChains: DescriptorChain[] = [];
  private readonly txChain = new DescriptorChain(4);
  private readonly txFrame = new Uint8Array(NET_HDR_SIZE + MAX_FRAME);
  private readonly rxHeader = new Uint8Array(NET_HDR_SIZE);
  /** One segment of a TSO frame being cut (headers + MSS, at most a frame). */
  private readonly segment = new Uint8Array(MAX_FRAME);
  private rxSpace: (() => void) | undefined;
  /** Frames each way, and frames the guest sent that were too long or shorter than the header. */
  framesIn = 0;
  framesOut = 0;
  badFrames = 0;

  constructor(private readonly opts: NetOptions) {
    if (opts.mac.length !== 6) throw new RangeError('virtio-net: a MAC address has 6 bytes');
    this.features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MTU) |
      bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM) | (opts.tso ? bit(VIRTIO_NET_F_HOST_TSO4) : 0n) |
      (opts.guestTso ? bit(VIRTIO_NET_F_GUEST_TSO4) : 0n);
    const v = new DataView(this.config.buffer);
    this.config.set(opts.mac, 0);
    v.setUint16(6, VIRTIO_NET_S_LINK_UP, true);
    v.setUint16(8, 1, true);
    v.setUint16(10, opts.mtu ?? DEFAULT_MTU, true);
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > this.configSize) return 0;
    const v = new DataView(this.config.buffer);
    return size === 1 ? v.getUint8(offset) : size === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
  }

  writeConfig(): void {
    // the MAC is read-only with VIRTIO_NET_F_MAC (VIRTIO_NET_F_CTRL_MAC_ADDR is not offered)
  }

  activate(): void {
    this.rxSpace?.();
  }

  reset(): void {}

  /**
   * Snapshot: the configuration space (MAC, link status, MTU). The device queues no frames of
   * its own (a frame is in guest memory or still the backend's), so this is all it has.
   */
  save(): NetState {
    return { config: Array.from(this.config) };
  }

  /** Snapshot restore (`s` validated by the caller: same length; the MAC must match the card's). */
  restore(s: NetState): void {
    this.config.set(s.config);
  }

  notify(index: number): void {
    if (index === TX_QUEUE) this.drainTx();
    else if (index === RX_QUEUE) this.rxSpace?.();
  }

  /** The backend has room again after `txReady` said false: send what the guest queued. */
  resumeTx(): void {
    this.drainTx();
  }

  /** Register the callback for "the driver posted receive buffers" (at most one). */
  onRxSpace(listener: () => void): void {
    this.rxSpace = listener;
  }

  /**
   * The largest frame the driver takes as one TCP/IPv4 receive offload now (GUEST_TSO4 and
   * GUEST_CSUM negotiated), else 0: a backend asks before it builds one.
   */
  gsoMax(): number {
    const n = this.transport?.negotiated ?? 0n;
    const want = bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_CSUM);
    return (n & want) === want ? MAX_FRAME : 0;
  }

  /**
   * Offer one frame to the guest. True: it is in guest memory (and the driver interrupted if it
   * wants); false: not enough receive buffers posted (or the driver is not ready) — keep it and
   * offer it again after `onRxSpace`. Frames longer than MAX_FRAME are refused for good (true,
   * counted as bad) so they cannot block the queue. `gsoSize` > 0: a TCP/IPv4 frame the guest
   * takes as segments of that size (only while gsoMax() allows; else it is refused for good too).
   */
  receive(frame: Uint8Array, gsoSize = 0): boolean {
    const t = this.transport;
    if (!t) return false;
    const hdrLen = gsoSize > 0 ? tcp4HeaderLength(frame) : 0;
    if (frame.length > MAX_FRAME || (gsoSize > 0 && (this.gsoMax() === 0 || hdrLen === 0 || gsoSize > 0xffff))) {
      this.badFrames++;
      return true;
    }
    const q = t.queue(RX_QUEUE);
    if (!q.ready) return false;
    const mem = t.memory;
    // take chains until their writable bytes hold header + frame
    const need = NET_HDR_SIZE + frame.length;
    // without MRG_RXBUF a frame must fit one chain (5.1.6.3.1): one that cannot is dropped
    const merge = (t.negotiated & bit(VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
    let have = 0;
    let n = 0;
    while (have < need) {
      if (n === 1 && !merge) {
        q.undoPop();
        this.badFrames++;
        return true;
      }
      if (n === this.rxChains.length) this.rxChains.push(new DescriptorChain(4));
      const chain = this.rxChains[n]!;
      const r = q.pop(mem, chain);
      if (r === false) {
        for (let i = 0; i < n; i++) q.undoPop();
        return false;
      }
      if (r !== true) {
        t.fail(r);
        return false;
      }
      n++;
      have += chain.writableBytes;
      if (n > NET_QUEUE_SIZE) break; // cannot happen: the queue hands out at most its size
    }
    // the header (num_buffers = n) then the frame, across the chains' writable buffers
    this.rxHeader.fill(0);
    if (this.opts.rxChecksumsValid && (t.negotiated & bit(VIRTIO_NET_F_GUEST_CSUM)) !== 0n) this.rxHeader[0] = VIRTIO_NET_HDR_F_DATA_VALID;
    const hv = new DataView(this.rxHeader.buffer);
    hv.setUint16(10, n, true);
    if (gsoSize > 0) {
      this.rxHeader[1] = VIRTIO_NET_HDR_GSO_TCPV4;
      hv.setUint16(2, hdrLen, true);
      hv.setUint16(4, gsoSize, true);
    }
    let src = 0; // bytes of header + frame written so far
    for (let c = 0; c < n; c++) {
      const chain = this.rxChains[c]!;
      let wrote = 0;
      for (let i = chain.readable; i < chain.count && src < need; i++) {
        let addr = chain.addr[i]!;
        let room = chain.len[i]!;
        while (room > 0 && src < need) {
          const part = src < NET_HDR_SIZE ? this.rxHeader.subarray(src, Math.min(NET_HDR_SIZE, src + room)) : frame.subarray(src - NET_HDR_SIZE, Math.min(frame.length, src - NET_HDR_SIZE + room));
          mem.writeBytes(addr, part);
          mem.dmaWritten(addr, part.length);
          addr += part.length;
          room -= part.length;
          src += part.length;
          wrote += part.length;
        }
      }
      q.pushUsed(mem, chain.head, wrote);
    }
    this.framesIn++;
    t.usedBuffers(RX_QUEUE);
    return true;
  }

  private drainTx(): void {
    const t = this.transport;
    if (!t) return;
    const q = t.queue(TX_QUEUE);
    const mem = t.memory;
    const chain = this.txChain;
    let used = false;
    const ready = this.opts.txReady;
    for (let budget = NET_QUEUE_SIZE; budget > 0; budget--) {
      if (ready && !ready()) break; // the frames wait in the ring until resumeTx()
      const r = q.pop(mem, chain);
      if (r === false) break;
      if (r !== true) {
        t.fail(r);
        return;
      }
      used = true;
      const total = chain.readableBytes;
      if (total < NET_HDR_SIZE || total > NET_HDR_SIZE + MAX_FRAME) {
        this.badFrames++;
        q.pushUsed(mem, chain.head, 0);
        continue;
      }
      let n = 0;
      for (let i = 0; i < chain.readable; i++) {
        const len = chain.len[i]!;
        mem.readInto(chain.addr[i]!, this.txFrame.subarray(n, n + len));
        n += len;
      }
      if (this.transmitFrame(n, t.negotiated)) this.framesOut++;
      else this.badFrames++;
      q.pushUsed(mem, chain.head, 0);
    }
    if (used) t.usedBuffers(TX_QUEUE);
  }

  /**
   * Hand the frame in txFrame[NET_HDR_SIZE, n) to the backend after the offloads its header asks
   * for (segmentation, checksum); false when the header does not fit the frame or asks for an
   * offload that was not negotiated (nothing sent).
   */
  private transmitFrame(n: number, negotiated: bigint): boolean {
    const h = this.txFrame;
    const frame = h.subarray(NET_HDR_SIZE, n);
    const gso = h[1]! & ~VIRTIO_NET_HDR_GSO_ECN;
    if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
      if (gso !== VIRTIO_NET_HDR_GSO_TCPV4 || (negotiated & bit(VIRTIO_NET_F_HOST_TSO4)) === 0n) return false;
      const mss = h[4]! | (h[5]! << 8);
      return segmentTcp4(frame, mss, this.segment, this.opts.transmit);
    }
    if (h[0]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if ((negotiated & bit(VIRTIO_NET_F_CSUM)) === 0n) return false;
      if (!completeChecksum(frame, h[6]! | (h[7]! << 8), h[8]! | (h[9]! << 8))) return false;
    }
    this.opts.transmit(frame);
    return true;
  }
}

/** A locally administered unicast MAC from a number (52:54:00 is QEMU's prefix; we use 52:54:00 too, as users expect). */
export function defaultMac(index: number): Uint8Array {
  return Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, (0x56 + index) & 0xff);
}
