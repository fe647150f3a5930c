/**
 * How an application processor on its own thread (ap-worker.ts) reaches the machine, whose
 * devices, interrupt controllers and timers stay on the main thread with the boot CPU: one
 * block of Int32 words per AP in a SharedArrayBuffer.
 *
 * - The mailbox: a port or MMIO access, an interrupt acknowledge or an NMI taken is a request
 *   the AP writes, then sleeps on (Atomics.wait) until the main thread has served it. The AP
 *   also raises the boot CPU's stop word (its translated code leaves at the next check) and
 *   the doorbell (which ends the main thread's halt sleep), so the main thread serves it soon.
 * - Writes are posted: the AP queues them in its ring and goes on (an ICR write that sends an
 *   IPI, an EOI, a character for the serial console), the main thread does them in order before
 *   anything else the AP asks (so a later read sees them).
 * - The signal word: what the AP must notice between instructions — a maskable interrupt or
 *   an NMI pending in its local APIC (mirrored by the main thread whenever it may have
 *   changed), INIT, STARTUP, pause, stop. A halted AP sleeps on it.
 * - The run word: what the AP is doing (the engine's idle, pause and halted-for-good checks).
 *
 * This is the kvm engine's design (src/kvm/control.ts: application processors forward their
 * exits to the thread that owns the devices through a mailbox), minus KVM.
 */

export const AP_WORDS = 16;

// mailbox
export const W_STATE = 0;
export const W_KIND = 1;
export const W_ADDR_LO = 2;
export const W_ADDR_HI = 3;
export const W_SIZE = 4;
export const W_VALUE = 5;
/** Signal bits (SIG_*), set by the main thread. */
export const W_SIGNAL = 6;
/** The STARTUP vector of a pending SIG_STARTUP. */
export const W_VECTOR = 7;
/** RUN_*: what the AP does, set by the AP. */
export const W_RUN = 8;

export const MB_IDLE = 0;
export const MB_REQUEST = 1;
export const MB_DONE = 2;

// (writes are posted: the ring below)
export const K_PIO_READ = 0;
export const K_MMIO_READ = 2;
export const K_ACK = 4;
export const K_NMI = 5;

export const SIG_IRQ = 1;
export const SIG_NMI = 2;
export const SIG_INIT = 4;
export const SIG_STARTUP = 8;
export const SIG_PAUSE = 16;
export const SIG_STOP = 32;

export const RUN_WAIT_SIPI = 0;
export const RUN_RUNNING = 1;
/** Halted with RFLAGS.IF set: an interrupt wakes it. */
export const RUN_HALTED = 2;
/** Halted with RFLAGS.IF clear: only an NMI, INIT or STARTUP would. */
export const RUN_HALTED_FOR_GOOD = 3;
export const RUN_PAUSED = 4;
export const RUN_EXITED = 5;

/** Posted writes an AP may have queued (each: address lo, hi, size | POSTED_PIO for a port, value). */
export const RING_SLOTS = 64;
export const POSTED_PIO = 0x100;
/** Per AP in the ring buffer: the head (next to do, main thread), the tail (next free, AP), the slots. */
export const RING_WORDS = 2 + RING_SLOTS * 4;

/**
 * Per AP, a box for its state as it paused (snapshots): Int32 words [0] the JSON's length in
 * bytes (-1: it did not fit), [1] the pause the main thread asked for, [2] the pause the AP
 * saved its state at; the JSON from byte BOX_DATA.
 */
export const BOX_BYTES = 256 * 1024;
export const BOX_DATA = 16;
export const BOX_LENGTH = 0;
export const BOX_ASKED = 1;
export const BOX_SAVED = 2;

/** The words shared by the engine and its AP threads. */
export class ApWords {
  readonly words: Int32Array;
  /** Word 0: the doorbell the APs ring (the main thread waits on it while its vCPU halts). */
  readonly doorbell: Int32Array;
  /** The posted-write rings, RING_WORDS per AP. */
  readonly posted: Int32Array;

  /** The state boxes, BOX_BYTES per AP. */
  readonly boxes: SharedArrayBuffer;

  constructor(readonly buffers: { words: SharedArrayBuffer; doorbell: SharedArrayBuffer; ring: SharedArrayBuffer; boxes: SharedArrayBuffer }) {
    this.words = new Int32Array(buffers.words);
    this.doorbell = new Int32Array(buffers.doorbell);
    this.posted = new Int32Array(buffers.ring);
    this.boxes = buffers.boxes;
  }

  static create(aps: number): ApWords {
    const n = Math.max(1, aps);
    return new ApWords({
      words: new SharedArrayBuffer(n * AP_WORDS * 4),
      doorbell: new SharedArrayBuffer(4),
      ring: new SharedArrayBuffer(n * RING_WORDS * 4),
      boxes: new SharedArrayBuffer(n * BOX_BYTES),
    });
  }

  /** AP `ap`'s box: its header words and its bytes. */
  box(ap: number): { head: Int32Array; bytes: Uint8Array } {
    return { head: new Int32Array(this.boxes, ap * BOX_BYTES, 4), bytes: new Uint8Array(this.boxes, ap * BOX_BYTES + BOX_DATA, BOX_BYTES - BOX_DATA) };
  }

  /** Index of AP `ap`'s (0 = the first AP, vCPU 1) word `w`. */
  at(ap: number, w: number): number {
    return ap * AP_WORDS + w;
  }

  /** Set signal bits for AP `ap` and wake it if it sleeps. */
  signal(ap: number, bits: number): void {
    const i = this.at(ap, W_SIGNAL);
    Atomics.or(this.words, i, bits);
    Atomics.notify(this.words, i);
  }

  /** Clear signal bits of AP `ap` (and wake it: a resume). */
  unsignal(ap: number, bits: number): void {
    const i = this.at(ap, W_SIGNAL);
    Atomics.and(this.words, i, ~bits);
    Atomics.notify(this.words, i);
  }

  ring(): void {
    Atomics.add(this.doorbell, 0, 1);
    Atomics.notify(this.doorbell, 0);
  }
}
