/**
 * Host I/O completions in the device thread.
 *
 * The device thread's JavaScript runs only between KVM_RUN calls, and its event loop only after
 * a kick (vcpu-worker.ts awaits a setImmediate after each EINTR). A disk backend's asynchronous
 * fs calls run on libuv's pool; their completions wait in this thread's event loop, and nothing
 * else would wake the thread while the guest sits in HLT (in the kernel, with the in-kernel
 * irqchip) waiting for the interrupt that completion raises. So while operations are in flight,
 * `IoPoll` keeps a deadline on the machine's TimerQueue every `intervalNs`: the engine's POSIX
 * timer kicks the thread out of KVM_RUN, the event loop runs the completions, the device raises
 * its interrupt (KVM_SIGNAL_MSI / KVM_IRQ_LINE) before the vCPU re-enters. With nothing in
 * flight there is no timer and no cost.
 *
 * The interval trades exits for latency: libuv's pool takes ~50-60 µs for a 4 KiB read from the
 * page cache, an exit ~15 µs (docs/architecture.md, "Virtio on the kvm engine").
 */
import type { DiskBackend, DiskDone } from '../devices/virtio/blk/backend.js';
import type { Timer, TimerQueue } from '../machine/clock.js';

/** Default poll interval while host I/O is in flight. */
export const IO_POLL_INTERVAL_NS = 50_000;

export class IoPoll {
  private inFlight = 0;
  private timer: Timer | undefined;
  private timers: TimerQueue | undefined;
  /** Poll deadlines that fired (statistics, measurements). */
  polls = 0;

  constructor(readonly intervalNs = IO_POLL_INTERVAL_NS) {}

  /** The machine's timers (known once the machine is built; operations may not start before). */
  attach(timers: TimerQueue): void {
    this.timers = timers;
    if (this.inFlight > 0) this.arm();
  }

  /** An operation starts: returns the callback that must run once when it completes. */
  begin<T extends unknown[]>(done: (...args: T) => void): (...args: T) => void {
    this.inFlight++;
    this.arm();
    let ended = false;
    return (...args: T) => {
      if (!ended) {
        ended = true;
        this.inFlight--;
      }
      done(...args);
    };
  }

  get pending(): number {
    return this.inFlight;
  }

  private arm(): void {
    const timers = this.timers;
    if (this.timer || !timers || this.inFlight === 0) return;
    this.timer = timers.schedule(timers.clock.nowNs() + this.intervalNs, () => {
      this.timer = undefined;
      this.polls++;
      this.arm(); // still in flight: poll again
    });
  }
}

/** `backend` with every operation counted by `poll`, so its completion is reached promptly. */
export function polledDisk(backend: DiskBackend, poll: IoPoll): DiskBackend {
  const wrap = (done: DiskDone): DiskDone => poll.begin(done);
  return {
    get size() {
      return backend.size;
    },
    get readOnly() {
      return backend.readOnly;
    },
    read: (offset, buffers, done) => backend.read(offset, buffers, wrap(done)),
    write: (offset, buffers, done) => backend.write(offset, buffers, wrap(done)),
    flush: (done) => backend.flush(wrap(done)),
    discard: (offset, length, done) => backend.discard(offset, length, wrap(done)),
    writeZeroes: (offset, length, done) => backend.writeZeroes(offset, length, wrap(done)),
  };
}
