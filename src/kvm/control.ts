/**
 * Shared control block between the engine (main thread) and its vCPU workers, in
 * SharedArrayBuffers: the stop flag, the start barrier, each vCPU's thread id and kick state,
 * and the mailboxes through which application processors forward port-I/O and MMIO exits to the
 * device thread (vCPU 0, which owns the machine's devices).
 *
 * Kicking a thread: the kicker sets whatever flag says why (stop, mailbox request, host
 * message), then sends SIGUSR2 to the vCPU thread. The vCPU thread keeps SIGUSR2 blocked except
 * inside KVM_RUN, so a kick is never lost. A thread is only signalled while its state is RUNNING;
 * a vCPU moves to EXITING (waiting out any kick in flight) before its thread can go away, so
 * pthread_kill never sees a dead thread.
 */
import { C, sys } from './sys.js';

export const MAX_VCPUS = 64;

// Int32 slots of the control array.
export const CTL_STOP = 0;
export const CTL_GO = 1;
/** A host message is waiting for the device thread. */
export const CTL_HOST_MESSAGE = 2;
/** A pause is asked for: each vCPU leaves KVM_RUN and holds (vcpu-worker.ts, holdPaused). */
export const CTL_PAUSE = 3;
/** How many application processors hold paused (the device thread waits for all of them). */
export const CTL_PAUSED_APS = 4;
const CTL_STATE = 8; // + vcpu index
export const CTL_WORDS = CTL_STATE + MAX_VCPUS;

export const STATE_STARTING = 0;
export const STATE_RUNNING = 1;
export const STATE_KICKING = 2;
export const STATE_EXITING = 3;

// Mailbox: one per vCPU, MAILBOX_WORDS int32 each.
export const MAILBOX_WORDS = 8;
export const MB_STATE = 0; // MB_IDLE / MB_REQUEST / MB_DONE
export const MB_KIND = 1; // 0 pio, 1 mmio
export const MB_WRITE = 2;
export const MB_ADDR_LO = 3;
export const MB_ADDR_HI = 4;
export const MB_SIZE = 5;
export const MB_VALUE = 6;
export const MB_IDLE = 0;
export const MB_REQUEST = 1;
export const MB_DONE = 2;

export interface ControlBuffers {
  ctl: SharedArrayBuffer;
  threads: SharedArrayBuffer;
  mailboxes: SharedArrayBuffer;
}

export function createControl(cpus: number): ControlBuffers {
  return {
    ctl: new SharedArrayBuffer(CTL_WORDS * 4),
    threads: new SharedArrayBuffer(MAX_VCPUS * 8),
    mailboxes: new SharedArrayBuffer(cpus * MAILBOX_WORDS * 4),
  };
}

export class Control {
  readonly ctl: Int32Array;
  readonly threads: BigInt64Array;
  readonly mailboxes: Int32Array;

  constructor(b: ControlBuffers) {
    this.ctl = new Int32Array(b.ctl);
    this.threads = new BigInt64Array(b.threads);
    this.mailboxes = new Int32Array(b.mailboxes);
  }

  get stopRequested(): boolean {
    return Atomics.load(this.ctl, CTL_STOP) !== 0;
  }

  /** Signal vCPU `i`'s thread if it is running KVM_RUN or about to (never a dead thread). */
  kick(i: number): void {
    const at = CTL_STATE + i;
    for (;;) {
      const s = Atomics.compareExchange(this.ctl, at, STATE_RUNNING, STATE_KICKING);
      if (s === STATE_RUNNING) break;
      if (s !== STATE_KICKING) return; // not started (it checks flags before running) or gone
      Atomics.wait(this.ctl, at, STATE_KICKING, 1);
    }
    sys.pthreadKill(BigInt.asUintN(64, this.threads[i]!), C.SIGUSR2);
    Atomics.store(this.ctl, at, STATE_RUNNING);
    Atomics.notify(this.ctl, at);
  }

  /** Called by vCPU `i`'s own thread once its thread id is published and kicks are armed. */
  markRunning(i: number, thread: bigint): void {
    this.threads[i] = BigInt.asIntN(64, thread);
    Atomics.store(this.ctl, CTL_STATE + i, STATE_RUNNING);
  }

  /** Called by vCPU `i`'s own thread before it exits: waits out a kick in flight. */
  markExiting(i: number): void {
    const at = CTL_STATE + i;
    for (;;) {
      const s = Atomics.compareExchange(this.ctl, at, STATE_RUNNING, STATE_EXITING);
      if (s !== STATE_KICKING) break;
      Atomics.wait(this.ctl, at, STATE_KICKING, 1);
    }
    Atomics.store(this.ctl, at, STATE_EXITING);
  }

  requestStop(cpus: number): void {
    Atomics.store(this.ctl, CTL_STOP, 1);
    for (let i = 0; i < cpus; i++) this.kick(i);
  }
}
