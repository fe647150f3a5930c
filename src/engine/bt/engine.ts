/**
 * The binary-translation engine: runs the software x86-64 CPU (src/cpu) over the machine on
 * the main thread, in slices, so the Node event loop keeps serving the console, timers and
 * signals between them.
 *
 * One slice = cpu.run(budget) instructions, with the budget tuned so a slice lasts about
 * SLICE_MS of host time. Between slices: device timers that are due run; every
 * YIELD_MS the engine yields to the event loop — after every slice while host I/O the guest
 * waits for is in flight (a disk read completes only when the event loop runs, so waiting
 * YIELD_MS would add ~4 ms to every request). When the vCPU halts with nothing pending,
 * the engine sleeps until the next timer deadline or until a device raises an interrupt line
 * (wake()), never spinning.
 *
 * Several vCPUs (BtEngineOptions.vcpus) take turns on this thread, a slice each, as QEMU's
 * translator did before it ran one thread per vCPU: an instruction boundary separates any two
 * vCPUs' instructions, so LOCKed read-modify-writes are atomic and stores are seen in order. The
 * application processors wait for INIT/STARTUP (init, startup: the APIC bus calls them); a vCPU
 * that spins on PAUSE ends its slice (Cpu.spinWait), so the one holding the lock runs. The
 * engine sleeps when every vCPU is halted with nothing pending or waits for STARTUP.
 *
 * ACPI S3 (machine.sleepEvent, from the PM device): on `suspend` the CPU leaves its slice at the
 * instruction that entered the sleeping state and no instruction runs — interrupts do not wake
 * it; the engine sleeps like a halted vCPU, running device timers (an RTC alarm is a wake
 * event). On `wake` the CPU is reset and starts as firmware hands over to the OS, at the FACS
 * waking vector (src/boot/acpi/wake.ts); RAM and the devices keep their state. No valid waking
 * vector: the machine resets, as firmware would.
 */
import type { Engine, EntryState } from '../../machine/engine.js';
import type { Machine, StopReason } from '../../machine/machine.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import { Cpu } from '../../cpu/core/cpu.js';
import { fallbackName } from '../../cpu/translate/block.js';
import { applyEntryState } from '../../cpu/system/entry.js';
import { facsWakeTarget } from '../../boot/acpi/wake.js';
import { simdUnit } from '../../cpu/fpu/index.js';
import { fullGc } from './gc.js';
import { enableBranchHints } from './branch-hints.js';
import { compileWasmEagerly } from './eager-compile.js';
import { tierForThreads } from './tiering.js';
import { nameBlocksForProfiles } from './profile-names.js';
import { setCpuidApicId } from '../../cpu/system/cpuid.js';
import { ApThreads, type ApThreadsOptions } from './ap-threads.js';
import { openTranslationChannel, translationMesh, type TranslationChannel } from './translation-channel.js';
import type { Ap } from '../../vmm/snapshot/state.js';

/** Atomics.waitAsync (Node 16+; not in this TypeScript lib). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, ms: number): { async: false; value: string } | { async: true; value: Promise<string> } }).waitAsync;

const RFLAGS_IF = 1 << 9;
const APIC_BASE_BSP = 1 << 8;
/** Target host time per cpu.run() call, so timers are checked often enough. */
const SLICE_MS = 0.5;
/** Instructions in the turn of a vCPU that another one waits for, spinning (several vCPUs). */
const SPIN_TURN = 2000;
/** Yield to the event loop at least this often while the guest runs. */
const YIELD_MS = 8;

export interface BtEngineOptions {
  /** The interrupt controller the CPU asks at instruction boundaries (the LAPIC model). */
  interrupts: CpuInterruptController;
  /**
   * More than one vCPU: each one's interrupt controller (its local APIC; the first is
   * `interrupts`), and `select`, called before a vCPU's slice (the APIC page answers for it).
   * The guest RAM's wasm arena needs a state area per vCPU (withArena(specs, n)).
   */
  vcpus?: { interrupts: readonly CpuInterruptController[]; select: (vcpu: number) => void };
  /** Called after every slice (flush batched console output, ...). */
  afterSlice?: () => void;
  /** True while host I/O a device started has not completed (yield after every slice then). */
  ioInFlight?: () => boolean;
  /** Entering (true) and leaving (false) a pause: freeze the machine's clock. */
  onPause?: (paused: boolean) => void;
  /** Block-start executions before a block is translated to WebAssembly (CpuOptions.jitThreshold). */
  jitThreshold?: number;
  /**
   * The application processors on threads of their own (ap-threads.ts; guest RAM shared), the
   * boot CPU on this thread with the devices; instead of `vcpus`, which take turns here.
   */
  threads?: Omit<ApThreadsOptions, 'onShutdown' | 'lowerKick'>;
}

export class BtEngine implements Engine {
  readonly name = 'bt' as const;
  /** The boot CPU (vCPU 0). */
  readonly cpu: Cpu;
  /** Every vCPU, by index (the boot CPU first). */
  readonly cpus: Cpu[];
  /** The application processors on threads of their own (BtEngineOptions.threads). */
  private readonly threads: ApThreads | undefined;
  /** The vCPU threads' channel for compiled block modules (with threads). */
  private readonly translations: TranslationChannel | undefined;
  /** Per vCPU: waiting for a STARTUP IPI (the application processors until the guest starts them, and after INIT). */
  private readonly waitingSipi: boolean[];
  private readonly controllers: readonly CpuInterruptController[];
  private wakeup: (() => void) | undefined;
  private budget = 20_000;
  /** Host time spent halted (sleeping until an event) and yielding to the event loop (statistics). */
  sleptMs = 0;
  yieldedMs = 0;
  /** Host time spent running the vCPU (statistics: this VM's own, where process CPU time counts every VM). */
  ranMs = 0;
  /** ACPI S3: running, suspended (no instruction runs), or woken (restart at the waking vector). */
  private s3: 'running' | 'suspended' | 'woken' = 'running';

  constructor(
    private readonly machine: Machine,
    private readonly opts: BtEngineOptions,
  ) {
    enableBranchHints();
    compileWasmEagerly();
    if (opts.threads) tierForThreads(opts.threads.lapics.length);
    nameBlocksForProfiles();
    this.controllers = opts.threads ? [opts.interrupts] : opts.vcpus?.interrupts ?? [opts.interrupts];
    this.cpus = this.controllers.map((interrupts, vcpu) => {
      const cpu = new Cpu({
        memory: machine.memory,
        pio: machine.pio,
        mmio: machine.mmio,
        interrupts,
        clock: machine.clock,
        simd: simdUnit,
        reclaim: fullGc,
        jitThreshold: opts.jitThreshold,
        vcpu,
        // this thread returns to its event loop between slices (run()), where the compile settles
        backgroundMerges: true,
      });
      setCpuidApicId(cpu.s, vcpu);
      if (vcpu !== 0) cpu.s.apicBase = (cpu.s.apicBase & ~APIC_BASE_BSP) >>> 0; // only the boot CPU has IA32_APIC_BASE.BSP
      return cpu;
    });
    this.cpu = this.cpus[0]!;
    if (this.cpus.length > 1) for (const c of this.cpus) c.joinPeers(this.cpus);
    if (opts.threads) {
      // one translation for all vCPUs: each thread takes the modules the others compile
      const mesh = translationMesh(opts.threads.lapics.length);
      this.translations = openTranslationChannel(mesh[0]!);
      this.cpu.shareTranslations(this.translations);
      this.threads = new ApThreads(machine, {
        ...opts.threads,
        translations: mesh,
        onShutdown: (vcpu, detail) => machine.requestStop({ kind: 'triple-fault', detail: `vCPU ${vcpu}: ${detail}` }),
        lowerKick: () => void this.cpu.kicked(true),
      });
      // the boot CPU's slice ends when it spins, or when an AP wants the devices this thread serves
      this.cpu.yieldOnPause();
      this.cpu.acceptKicks();
    }
    this.waitingSipi = this.cpus.map((_, i) => i !== 0);
    // Devices writing guest RAM (a disk read landing in memory) drop code translated from it
    // (in every vCPU: they share the code-line map).
    machine.memory.onDmaWrite((addr, len) => this.cpu.notifyPhysWrite(addr, len));
    if (process.env.TYPEVISOR_BT_STATS) {
      this.cpu.fallbackCounts = new Map();
      this.cpu.wasm?.countEntries();
      const onSignal = (): void => this.printStats();
      process.on('SIGUSR2', onSignal);
      machine.onStop(() => process.off('SIGUSR2', onSignal));
    }
    machine.onSleepEvent((event) => {
      if (event === 'suspend') {
        this.s3 = 'suspended';
        this.requestExitAll(); // nothing after the PM1 control write runs
      } else if (this.s3 === 'suspended') {
        this.s3 = 'woken';
        this.endSleep();
      }
    });
    machine.onStop(() => {
      this.requestExitAll();
      this.endSleep();
      this.resume(); // a stop ends a pause
    });
  }

  /** Pause requested: resolve these once the vCPU is at an instruction boundary and I/O drained. */
  private pauseWaiters: (() => void)[] = [];
  /** Paused: resolving this resumes. */
  private resumeGate: (() => void) | undefined;

  /**
   * Stop the vCPU at an instruction boundary between slices and let host I/O the devices
   * started complete (the disks' requests land in guest RAM and their used rings); resolves
   * once paused. The engine then waits for `resume()`.
   */
  pause(): Promise<void> {
    if (this.resumeGate) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.pauseWaiters.push(resolve);
      this.requestExitAll();
      this.endSleep();
    });
  }

  resume(): void {
    const r = this.resumeGate;
    this.resumeGate = undefined;
    r?.();
  }

  get paused(): boolean {
    return this.resumeGate !== undefined;
  }

  /** Between slices: drain I/O, report paused, wait for resume (or a stop). */
  private async holdPaused(): Promise<void> {
    while (this.opts.ioInFlight?.() && !this.machine.stopReason) await new Promise<void>((r) => setTimeout(r, 1));
    await this.threads?.pause();
    const gate = new Promise<void>((r) => (this.resumeGate = r));
    this.opts.onPause?.(true);
    for (const w of this.pauseWaiters.splice(0)) w();
    await gate;
    this.threads?.resume();
    this.opts.onPause?.(false);
  }

  /**
   * Something happened (an interrupt line rose, input arrived): end a halt sleep now. Not in
   * S3: an interrupt does not wake a suspended machine (a guest's periodic PIT would otherwise
   * spin the host loop), only a wake event, a timer deadline, a pause or a stop.
   */
  wake(): void {
    this.threads?.mirror();
    if (this.s3 !== 'suspended') this.endSleep();
  }

  private endSleep(): void {
    const w = this.wakeup;
    this.wakeup = undefined;
    w?.();
  }

  stop(reason: StopReason): void {
    this.machine.requestStop(reason);
  }

  private requestExitAll(): void {
    for (const c of this.cpus) c.requestExit();
  }

  /**
   * The application processors as a snapshot sees them (vmm/snapshot/state.ts: saveMachine and
   * restoreMachine read and set `waitingSipi` through these).
   */
  aps(): Ap[] {
    if (this.threads) return this.threads.aps();
    const flags = this.waitingSipi;
    return this.cpus.slice(1).map((cpu, k) => ({
      cpu,
      get waitingSipi(): boolean {
        return flags[k + 1]!;
      },
      set waitingSipi(v: boolean) {
        flags[k + 1] = v;
      },
    }));
  }

  /** INIT IPI (the APIC bus): the vCPU stops where it is and waits for STARTUP. */
  init(vcpu: number): void {
    if (this.threads && vcpu > 0) return this.threads.init(vcpu);
    const cpu = this.cpus[vcpu];
    if (cpu === undefined) return;
    cpu.reset();
    cpu.s.halted = true;
    this.waitingSipi[vcpu] = true;
    cpu.requestExit();
  }

  /** STARTUP IPI: a vCPU waiting for it starts in real mode at vector * 0x1000; others ignore it. */
  startup(vcpu: number, vector: number): void {
    if (this.threads && vcpu > 0) return this.threads.startup(vcpu, vector);
    const cpu = this.cpus[vcpu];
    if (cpu === undefined || !this.waitingSipi[vcpu]) return;
    this.waitingSipi[vcpu] = false;
    cpu.reset();
    applyEntryState(cpu, { mode: 'real16', rip: (vector & 0xff) << 12, realCs: (vector & 0xff) << 8, regs: {} });
  }

  /** Run from `entry` (a boot), or from the CPU's state as it is (a restored snapshot). */
  async run(entry?: EntryState): Promise<StopReason> {
    const { machine, cpus } = this;
    const timers = machine.timers;
    const clock = machine.clock;
    const select = this.opts.vcpus?.select;
    if (entry) applyEntryState(this.cpu, entry);
    this.threads?.start();
    // The caller (Vm.start) returns with the machine built and, after a restore, its state in
    // place; the guest runs from the next turn of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    let lastYield = performance.now();
    let t1 = lastYield;
    /** The vCPU that ended its last turn spinning on PAUSE, or -1. */
    let spinning = -1;
    while (!machine.stopReason) {
      this.threads?.serve();
      for (let i = 0; i < cpus.length; i++) {
        const cpu = cpus[i]!;
        if (!this.canRun(i)) continue;
        select?.(i);
        // another vCPU spins waiting (for a lock, or for the answer to a synchronous IPI, which
        // this one likely owes it): a short turn, so it is not kept waiting a whole slice
        const short = spinning !== -1 && spinning !== i;
        const budget = short ? SPIN_TURN : this.budget;
        spinning = -1;
        const t0 = performance.now();
        const n = cpu.run(budget);
        t1 = performance.now();
        this.ranMs += t1 - t0;
        if (cpu.spun) {
          cpu.spun = false;
          spinning = i;
        }
        // Tune the budget toward SLICE_MS per call (instructions cost differently in each phase).
        if (n >= this.budget && !short) {
          const spent = t1 - t0;
          if (spent < SLICE_MS * 0.5 && this.budget < 2_000_000) this.budget *= 2;
          else if (spent > SLICE_MS * 2 && this.budget > 1000) this.budget >>= 1;
        }
        if (cpu.shutdown !== undefined) {
          machine.requestStop({ kind: 'triple-fault', detail: cpus.length > 1 ? `vCPU ${i}: ${cpu.shutdown}` : cpu.shutdown });
          break;
        }
        if (machine.stopReason || this.pauseWaiters.length || this.s3 !== 'running') break;
        if (timers.nextDeadline() <= clock.nowNs()) timers.runDue();
        this.threads?.serve();
      }
      t1 = performance.now();
      this.opts.afterSlice?.();
      if (machine.stopReason) break;
      if (this.pauseWaiters.length) {
        await this.holdPaused();
        lastYield = performance.now();
        continue;
      }
      if (this.s3 !== 'running') {
        await this.sleepInS3();
        lastYield = performance.now();
        continue;
      }
      if (timers.nextDeadline() <= clock.nowNs()) timers.runDue();
      if (machine.stopReason) break;
      if (this.idle()) {
        if (this.haltedForGood()) {
          const cpu = this.cpus.find((c, i) => !this.waitingSipi[i]) ?? this.cpu;
          machine.requestStop({
            kind: 'halted',
            detail: `the CPU stopped with interrupts disabled at rip 0x${cpu.s.rip.toString(16)}, and nothing can wake it (a kernel halting on a fatal error, or poweroff without ACPI)`,
          });
          break;
        }
        await this.sleepUntilEvent();
        lastYield = performance.now();
        this.sleptMs += lastYield - t1;
        timers.runDue();
      } else if (t1 - lastYield >= YIELD_MS || this.opts.ioInFlight?.()) {
        await new Promise<void>((r) => setImmediate(r));
        lastYield = performance.now();
        this.yieldedMs += lastYield - t1;
      }
    }
    if (process.env.TYPEVISOR_BT_STATS) this.printStats();
    await this.threads?.stop();
    this.translations?.close();
    return machine.stopReason ?? { kind: 'error', message: 'engine stopped without a reason' };
  }

  /** Can vCPU `i` take a turn: started, and not halted or with an interrupt or NMI pending? */
  private canRun(i: number): boolean {
    if (this.waitingSipi[i]) return false;
    const ic = this.controllers[i]!;
    return !this.cpus[i]!.s.halted || ic.hasInterrupt() || (ic.hasNmi?.() ?? false);
  }

  /** No vCPU can run: each is halted with nothing pending, or waits for STARTUP. */
  private idle(): boolean {
    for (let i = 0; i < this.cpus.length; i++) if (this.canRun(i)) return false;
    return true;
  }

  /** Counters at the last printStats (its figures are the work since then). */
  private statsBase = { retired: 0, run: 0, entries: 0, stepsRun: 0, compiled: 0, modules: 0, merges: 0, faults: 0, ranMs: 0, sleptMs: 0, yieldedMs: 0 };

  /**
   * TYPEVISOR_BT_STATS: what the CPU did since the last print (at exit, or on SIGUSR2 to print
   * a stretch of a run), and the instructions translated blocks handed to the interpreter most.
   */
  private printStats(): void {
    const { cpu } = this;
    const cache = cpu.cache;
    const now = {
      retired: cpu.retired, run: cache?.run ?? 0, entries: cpu.wasm?.entries ?? 0, stepsRun: cpu.stepsRun, compiled: cache?.compiled ?? 0,
      modules: cpu.wasm?.modulesCompiled ?? 0, merges: cpu.wasm?.modulesMerged ?? 0, faults: cpu.faultsTaken,
      ranMs: this.ranMs, sleptMs: this.sleptMs, yieldedMs: this.yieldedMs,
    };
    const d = Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - this.statsBase[k as keyof typeof now]])) as typeof now;
    this.statsBase = now;
    // a chain of blocks run from the host enters each of them (a wrapped counter still subtracts right)
    const entries = d.entries >>> 0;
    process.stderr.write(`bt stats: retired ${d.retired}, blocks run ${d.run} (avg ${((d.retired - d.stepsRun) / d.run).toFixed(1)} insns), ` +
      `block entries ${entries} (avg ${((d.retired - d.stepsRun) / entries).toFixed(1)} insns), ` +
      `compiled ${d.compiled} (${d.modules} modules, ${d.merges} of them merges, ${cpu.wasm?.adoptedBlocks ?? 0} blocks taken from other threads, ${cache?.flushes ?? 0} flushes, ${cache?.smcRefused ?? 0} refused for SMC), interpreted ${d.stepsRun}, faults ${d.faults}, ` +
      `${(d.retired / d.ranMs / 1e3).toFixed(1)} M instructions per second of running, ` +
      `halted ${(d.sleptMs / 1000).toFixed(1)} s, yielding ${(d.yieldedMs / 1000).toFixed(1)} s\n`);
    const top = [...(cpu.fallbackCounts ?? [])].sort((a, b) => b[1] - a[1]).slice(0, 24);
    cpu.fallbackCounts?.clear();
    process.stderr.write(`bt stats: interpreted inside blocks: ${top.map(([k, n]) => `${fallbackName(k)} ${n}`).join(', ')}\n`);
  }

  /**
   * Every vCPU halted with RFLAGS.IF clear and no NMI pending, or waiting for STARTUP: only an
   * NMI, INIT or STARTUP could resume one, and only a running vCPU could send those.
   */
  private haltedForGood(): boolean {
    if (this.threads && !this.threads.allHaltedForGood()) return false;
    return this.cpus.every((cpu, i) => this.waitingSipi[i] || ((cpu.getRflags() & RFLAGS_IF) === 0 && !(this.controllers[i]!.hasNmi?.() ?? false)));
  }

  /**
   * S3: wait (running device timers, serving pauses) until a wake event, then start the boot
   * CPU at the waking vector as firmware would: a reset CPU, then real mode at CS:IP (or flat
   * 32-bit protected mode at X_Firmware_Waking_Vector).
   */
  private async sleepInS3(): Promise<void> {
    const { machine, cpu } = this;
    while (this.s3 === 'suspended' && !machine.stopReason) {
      if (this.pauseWaiters.length) {
        await this.holdPaused();
        continue;
      }
      const t = performance.now();
      await this.sleepUntilEvent();
      this.sleptMs += performance.now() - t;
      machine.timers.runDue();
    }
    if (machine.stopReason || this.s3 !== 'woken') return;
    this.s3 = 'running';
    const target = facsWakeTarget(machine.memory);
    if (!target.ok) {
      machine.requestStop({ kind: 'reset', detail: `S3 wake: ${target.reason}` });
      return;
    }
    cpu.reset();
    applyEntryState(cpu, target.entry);
  }

  private sleepUntilEvent(): Promise<void> {
    const timers = this.machine.timers;
    const deadline = timers.nextDeadline();
    const ms = deadline === Infinity ? 1000 : Math.max(0, (deadline - this.machine.clock.nowNs()) / 1e6);
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => this.endSleep(), ms);
      this.wakeup = () => {
        clearTimeout(t);
        resolve();
      };
      const threads = this.threads;
      if (threads) {
        // an AP's request (or a change of what it does) rings the doorbell: end the sleep
        const db = threads.ch.doorbell;
        const seen = Atomics.load(db, 0);
        threads.serve();
        const r = waitAsync(db, 0, seen, Math.min(ms, 1000));
        if (!r.async) this.endSleep();
        else void r.value.then((v) => v === 'ok' && this.endSleep());
      }
    });
  }
}
