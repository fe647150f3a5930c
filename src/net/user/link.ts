/**
 * What the protocol modules need of the stack: a bounded queue of frames to the guest, the
 * guest's MAC, and counters. Control frames (ACKs, ARP, DHCP, ICMP) are always queued up to a
 * hard cap; data (TCP payload, UDP from the host) is sent only while the queue has room, and a
 * sender that found it full is called back when the guest has taken frames.
 */
export interface Link {
  /**
   * Queue a whole frame to the guest (taken, not copied). False: dropped (queue at its hard cap).
   * `gsoSize` > 0: a TCP/IPv4 frame of up to gsoMax() bytes the guest takes as segments of that size.
   */
  send(frame: Uint8Array, gsoSize?: number): boolean;
  /** The largest TCP/IPv4 frame the guest's NIC takes as one receive offload now (0: none: MSS-sized segments only). */
  gsoMax(): number;
  /** The queue to the guest is below its high-water mark: data may be sent. */
  hasRoom(): boolean;
  /** Call `fn` once when the queue is below its low-water mark again (after hasRoom() was false). */
  whenRoom(fn: () => void): void;
  /** Run the stack's flush soon (pending ACKs are sent then, one per connection per batch). */
  requestFlush(): void;
  /** Where frames to the guest go (learned from its frames; broadcast until then). */
  readonly guestMac: Uint8Array;
  /** Count an event (drops, errors) by name: statistics, never thrown. */
  count(name: string): void;
  /** Something went wrong on the host side that a user may want to know (rate-limited by the stack). */
  log(line: string): void;
}
