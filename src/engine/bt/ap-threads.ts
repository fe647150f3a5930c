/**
 * The main thread's side of application processors on threads of their own (ap-worker.ts,
 * ap-channel.ts): starts the threads, serves their mailboxes against the machine's buses and
 * their local APICs, mirrors each APIC's pending interrupt and NMI into the AP's signal word,
 * forwards INIT and STARTUP, and pauses and stops them.
 */
import { Worker, type MessagePort } from 'node:worker_threads';
import type { Machine } from '../../machine/machine.js';
import type { AccessSize } from '../../machine/bus.js';
import type { LocalApic } from '../../devices/legacy/lapic/lapic.js';
import { workerScript } from '../../kvm/prestart.js';
import type { ApWorkerData } from './ap-worker.js';
import type { CpuSnapshot } from '../../vmm/snapshot/cpu.js';
import { SnapshotError } from '../../vmm/snapshot/check.js';
import type { Ap } from '../../vmm/snapshot/state.js';
import {
  AP_WORDS, ApWords, BOX_ASKED, BOX_LENGTH, BOX_SAVED, POSTED_PIO, RING_SLOTS, RING_WORDS, K_ACK, K_MMIO_READ, K_NMI, K_PIO_READ, MB_DONE, MB_REQUEST,
  RUN_EXITED, RUN_HALTED_FOR_GOOD, RUN_PAUSED, RUN_WAIT_SIPI, SIG_INIT, SIG_IRQ, SIG_NMI, SIG_PAUSE, SIG_STARTUP, SIG_STOP,
  W_ADDR_HI, W_ADDR_LO, W_KIND, W_RUN, W_SIGNAL, W_SIZE, W_STATE, W_VALUE, W_VECTOR,
} from './ap-channel.js';

/** What ApThreads needs of the machine beside the Machine itself. */
export interface ApThreadsOptions {
  /** All vCPUs' local APICs (index 0: the boot CPU's). */
  lapics: readonly LocalApic[];
  /** The APIC page answers for vCPU `vcpu` from now on (LapicWindow.select). */
  select: (vcpu: number) => void;
  /** What each thread builds its vCPU from (minus its index and the words). */
  worker: Omit<ApWorkerData, 'vcpu' | 'words'>;
  /** An AP's CPU shut down (a triple fault): stop the machine. */
  onShutdown: (vcpu: number, detail: string) => void;
  /** Lower the boot CPU's stop word (Cpu.kicked): its requests are being served. */
  lowerKick: () => void;
  /** Per vCPU, its ports for compiled block modules (translation-channel.ts): each AP's go to its thread. */
  translations?: MessagePort[][];
}

export class ApThreads {
  readonly ch: ApWords;
  private readonly workers: Worker[] = [];
  private readonly exited: Promise<void>[] = [];
  private readonly n: number;

  /** Restored states for the APs (a snapshot), handed to their threads as they start. */
  private readonly restored: (ApWorkerData['restore'] | undefined)[] = [];

  constructor(private readonly machine: Machine, private readonly opts: ApThreadsOptions) {
    this.n = opts.lapics.length - 1;
    this.ch = ApWords.create(this.n);
  }

  /** Start the threads (the engine's run: nothing is left running if the VM fails before). */
  start(): void {
    const opts = this.opts;
    const started = workerScript('ap-worker', import.meta.url);
    for (let ap = 0; ap < this.n; ap++) {
      const ports = opts.translations?.[ap + 1];
      const data: ApWorkerData = { ...opts.worker, vcpu: ap + 1, words: this.ch.buffers, restore: this.restored[ap], translations: ports };
      const worker = new Worker(started.script, { eval: started.eval, workerData: data, transferList: ports });
      worker.on('message', (m: { type: string; detail?: string }) => {
        if (m.type === 'shutdown') opts.onShutdown(ap + 1, m.detail ?? 'triple fault');
      });
      worker.on('error', (e) => opts.onShutdown(ap + 1, `its thread failed: ${e.message}`));
      this.exited.push(new Promise((resolve) => worker.once('exit', () => resolve())));
      this.workers.push(worker);
    }
  }

  /** Serve every mailbox with a request waiting; then mirror the APICs' pending state. */
  serve(): void {
    const w = this.ch.words;
    const { machine } = this;
    this.opts.lowerKick();
    for (let ap = 0; ap < this.n; ap++) {
      this.drainPosted(ap);
      const b = ap * AP_WORDS;
      if (Atomics.load(w, b + W_STATE) !== MB_REQUEST) continue;
      const kind = w[b + W_KIND]!;
      const addr = (w[b + W_ADDR_LO]! >>> 0) + (w[b + W_ADDR_HI]! >>> 0) * 4294967296;
      const size = w[b + W_SIZE]! as AccessSize;
      let v = 0;
      this.opts.select(ap + 1);
      try {
        switch (kind) {
          case K_PIO_READ: v = machine.pio.read(addr, size); break;
          case K_MMIO_READ: v = machine.mmio.read(addr, size); break;
          case K_ACK: v = this.opts.lapics[ap + 1]!.acknowledge(); break;
          case K_NMI: v = this.opts.lapics[ap + 1]!.takeNmi() ? 1 : 0; break;
        }
      } finally {
        this.opts.select(0);
      }
      w[b + W_VALUE] = v | 0;
      // what it has pending now (an acknowledge took one) before it goes on and looks
      this.mirrorOne(ap);
      Atomics.store(w, b + W_STATE, MB_DONE);
      Atomics.notify(w, b + W_STATE);
    }
    this.mirror();
  }

  /** AP `ap`'s posted writes, in order. */
  private drainPosted(ap: number): void {
    const ring = this.ch.posted;
    const rb = ap * RING_WORDS;
    let head = ring[rb]!;
    const tail = Atomics.load(ring, rb + 1);
    if (head === tail) return;
    this.opts.select(ap + 1);
    try {
      for (; head !== tail; head++) {
        const e = rb + 2 + (head % RING_SLOTS) * 4;
        const kind = ring[e + 2]!;
        const bus = kind & POSTED_PIO ? this.machine.pio : this.machine.mmio;
        bus.write((ring[e]! >>> 0) + (ring[e + 1]! >>> 0) * 4294967296, (kind & 0xff) as AccessSize, ring[e + 3]! >>> 0);
      }
    } finally {
      this.opts.select(0);
      Atomics.store(ring, rb, head);
      Atomics.notify(ring, rb);
    }
  }

  /** Each AP's signal word says what its APIC has pending (after anything that may change it). */
  mirror(): void {
    for (let ap = 0; ap < this.n; ap++) this.mirrorOne(ap);
  }

  private mirrorOne(ap: number): void {
    const w = this.ch.words;
    const l = this.opts.lapics[ap + 1]!;
    const want = (l.hasInterrupt() ? SIG_IRQ : 0) | (l.hasNmi() ? SIG_NMI : 0);
    const has = w[ap * AP_WORDS + W_SIGNAL]! & (SIG_IRQ | SIG_NMI);
    if (want & ~has) this.ch.signal(ap, want & ~has);
    if (has & ~want) Atomics.and(w, ap * AP_WORDS + W_SIGNAL, ~(has & ~want));
  }

  /** INIT IPI to vCPU `vcpu` (≥ 1). */
  init(vcpu: number): void {
    this.ch.signal(vcpu - 1, SIG_INIT);
  }

  /** STARTUP IPI to vCPU `vcpu` (≥ 1): ignored there unless it waits for one. */
  startup(vcpu: number, vector: number): void {
    this.ch.words[(vcpu - 1) * AP_WORDS + W_VECTOR] = vector & 0xff;
    this.ch.signal(vcpu - 1, SIG_STARTUP);
  }

  private runState(ap: number): number {
    return Atomics.load(this.ch.words, ap * AP_WORDS + W_RUN);
  }

  /** Every AP waits for STARTUP, is halted with interrupts off, or has exited. */
  allHaltedForGood(): boolean {
    for (let ap = 0; ap < this.n; ap++) {
      const r = this.runState(ap);
      if (r !== RUN_WAIT_SIPI && r !== RUN_HALTED_FOR_GOOD && r !== RUN_EXITED) return false;
    }
    return true;
  }

  /**
   * Pause every AP at an instruction boundary (serving their requests until they all hold),
   * each leaving its state in its box.
   */
  async pause(): Promise<void> {
    for (let ap = 0; ap < this.n; ap++) {
      Atomics.add(this.ch.box(ap).head, BOX_ASKED, 1);
      this.ch.signal(ap, SIG_PAUSE);
    }
    for (;;) {
      this.serve();
      let all = true;
      for (let ap = 0; ap < this.n; ap++) {
        const r = this.runState(ap);
        const head = this.ch.box(ap).head;
        if (r !== RUN_EXITED && (r !== RUN_PAUSED || Atomics.load(head, BOX_SAVED) !== Atomics.load(head, BOX_ASKED))) all = false;
      }
      if (all) return;
      await new Promise<void>((r) => setTimeout(r, 1));
    }
  }

  /**
   * The APs as a snapshot sees them (vmm/snapshot/state.ts): paused, their states in their
   * boxes; before the threads start, where a restore leaves theirs.
   */
  aps(): Ap[] {
    return Array.from({ length: this.n }, (_, ap) => {
      let saved: { cpu: CpuSnapshot; waitingSipi: boolean } | undefined;
      const read = (): { cpu: CpuSnapshot; waitingSipi: boolean } => {
        if (saved) return saved;
        const { head, bytes } = this.ch.box(ap);
        const len = head[BOX_LENGTH]!;
        if (len <= 0 || Atomics.load(head, BOX_SAVED) !== Atomics.load(head, BOX_ASKED)) {
          throw new SnapshotError(`Cannot save the machine: vCPU ${ap + 1} left no state (${len < 0 ? 'it did not fit its box' : 'pause the VM first'})`);
        }
        saved = JSON.parse(new TextDecoder().decode(bytes.slice(0, len))) as { cpu: CpuSnapshot; waitingSipi: boolean };
        return saved;
      };
      let waitingSipi: boolean | undefined;
      return {
        get waitingSipi(): boolean {
          return waitingSipi ?? read().waitingSipi;
        },
        set waitingSipi(v: boolean) {
          waitingSipi = v;
        },
        thread: {
          saved: () => read().cpu,
          restore: (cpu: CpuSnapshot, clockNs: number) => {
            this.restored[ap] = { cpu, waitingSipi: waitingSipi ?? false, clockNs };
          },
        },
      };
    });
  }

  resume(): void {
    for (let ap = 0; ap < this.n; ap++) this.ch.unsignal(ap, SIG_PAUSE);
  }

  /** Stop every AP and wait for their threads to end (terminating one that does not). */
  async stop(): Promise<void> {
    for (let ap = 0; ap < this.n; ap++) this.ch.signal(ap, SIG_STOP);
    const late = setTimeout(() => this.workers.forEach((w) => void w.terminate()), 2000);
    await Promise.all(this.exited);
    clearTimeout(late);
  }
}
