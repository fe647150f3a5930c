/**
 * A POSIX timer that kicks one thread (SIGUSR2 to its tid) at an absolute CLOCK_MONOTONIC time:
 * how the device thread wakes out of KVM_RUN (the guest may sit in HLT) when the machine's
 * TimerQueue has a deadline. The kick is handled like any other (see armKickSignal).
 */
import { C, check, sys } from './sys.js';

export class DeadlineTimer {
  private readonly id: bigint;
  private readonly spec = new Uint8Array(C.ITIMERSPEC_SIZE);
  private readonly specView = new DataView(this.spec.buffer);
  /** Absolute monotonic ns currently armed (0 = disarmed). */
  private armed = 0n;
  private deleted = false;

  /** Create a timer that signals the calling thread. */
  constructor() {
    const sev = new Uint8Array(C.SIGEVENT_SIZE);
    const dv = new DataView(sev.buffer);
    dv.setInt32(C.SIGEVENT_SIGEV_SIGNO, C.SIGUSR2, true);
    dv.setInt32(C.SIGEVENT_SIGEV_NOTIFY, C.SIGEV_THREAD_ID, true);
    dv.setInt32(C.SIGEVENT_SIGEV_UN_TID, sys.gettid(), true);
    const out = new Uint8Array(8);
    check(sys.timerCreate(C.CLOCK_MONOTONIC, sev, out), 'timer_create');
    this.id = new DataView(out.buffer).getBigUint64(0, true);
  }

  /** Fire at `monotonicNs` (process.hrtime.bigint() clock); 0n disarms. */
  arm(monotonicNs: bigint): void {
    if (monotonicNs === this.armed || this.deleted) return;
    this.armed = monotonicNs;
    const value = C.ITIMERSPEC_IT_VALUE;
    this.specView.setBigInt64(value + C.TIMESPEC_TV_SEC, monotonicNs / 1_000_000_000n, true);
    this.specView.setBigInt64(value + C.TIMESPEC_TV_NSEC, monotonicNs % 1_000_000_000n, true);
    check(sys.timerSettime(this.id, C.TIMER_ABSTIME, this.spec, null), 'timer_settime');
  }

  delete(): void {
    if (this.deleted) return;
    this.deleted = true;
    sys.timerDelete(this.id);
  }
}
