/**
 * An application processor of the bt engine on a thread of its own (engine.ts, `threads`): a
 * Cpu over the machine's shared guest RAM, whose port and MMIO accesses and interrupt
 * acknowledges go to the main thread through its mailbox (ap-channel.ts). It waits for STARTUP,
 * runs, sleeps while halted, holds while paused, and ends at stop.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Cpu } from '../../cpu/core/cpu.js';
import { applyEntryState } from '../../cpu/system/entry.js';
import { setCpuidApicId } from '../../cpu/system/cpuid.js';
import { simdUnit } from '../../cpu/fpu/index.js';
import { attachArena } from '../../cpu/wasm/arena.js';
import { GuestMemory } from '../../machine/memory.js';
import type { AccessSize } from '../../machine/bus.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import { applyCpu, parseCpu, saveCpu, type CpuSnapshot } from '../../vmm/snapshot/cpu.js';
import { fullGc } from './gc.js';
import { enableBranchHints } from './branch-hints.js';
import { nameBlocksForProfiles } from './profile-names.js';
import { SharedClock } from './shared-clock.js';
import { openTranslationChannel } from './translation-channel.js';
import {
  AP_WORDS, ApWords, BOX_ASKED, BOX_LENGTH, BOX_SAVED, POSTED_PIO, RING_SLOTS, RING_WORDS, K_ACK, K_MMIO_READ, K_NMI, K_PIO_READ, MB_DONE, MB_IDLE, MB_REQUEST,
  RUN_EXITED, RUN_HALTED, RUN_HALTED_FOR_GOOD, RUN_PAUSED, RUN_RUNNING, RUN_WAIT_SIPI,
  SIG_INIT, SIG_IRQ, SIG_NMI, SIG_PAUSE, SIG_STARTUP, SIG_STOP, W_ADDR_HI, W_ADDR_LO, W_KIND, W_RUN, W_SIGNAL, W_SIZE, W_STATE, W_VALUE, W_VECTOR,
} from './ap-channel.js';

/** What the engine posts to start an AP thread. */
export interface ApWorkerData {
  vcpu: number;
  vcpus: number;
  /** The arena (the first RAM region and every vCPU's state area). */
  arena: WebAssembly.Memory;
  /** Every RAM region: base, size, and (after the first) its shared buffer. */
  regions: { base: number; size: number; buffer?: SharedArrayBuffer }[];
  words: { words: SharedArrayBuffer; doorbell: SharedArrayBuffer; ring: SharedArrayBuffer; boxes: SharedArrayBuffer };
  /** A restored snapshot's state for this AP (its CPU, waiting for STARTUP or not, at machine time clockNs). */
  restore?: { cpu: CpuSnapshot; waitingSipi: boolean; clockNs: number };
  clock: SharedArrayBuffer;
  jitThreshold?: number;
  /** Index (Int32) of the boot CPU's stop word in the arena: raised with each request. */
  bspStop: number;
  /** This AP's ports to the other vCPUs' threads for compiled block modules (translation-channel.ts). */
  translations?: MessagePort[];
}

const RFLAGS_IF = 1 << 9;
const APIC_BASE_BSP = 1 << 8;
/** Instructions per cpu.run() between looks at the signal word. */
const BUDGET = 50_000;

const data = workerData as ApWorkerData;
const ap = data.vcpu - 1;
const ch = new ApWords(data.words);
const w = ch.words;
const base = ap * AP_WORDS;
const first = data.regions[0]!;
const memory = new GuestMemory(data.regions.map((r, i) => ({ base: r.base, size: r.size, buffer: i === 0 ? attachArena(data.arena, first.size, data.vcpus) : r.buffer })));
const arenaWords = new Int32Array(data.arena.buffer);

/** Requests through the mailbox by kind, and posted writes (TYPEVISOR_BT_STATS). */
const requests = new Map<number, number>();
let posted = 0;

/** A request through the mailbox, answered by the main thread. */
function request(kind: number, addr: number, size: number, value: number): number {
  requests.set(kind, (requests.get(kind) ?? 0) + 1);
  w[base + W_KIND] = kind;
  w[base + W_ADDR_LO] = addr >>> 0;
  w[base + W_ADDR_HI] = Math.floor(addr / 4294967296);
  w[base + W_SIZE] = size;
  w[base + W_VALUE] = value;
  Atomics.store(w, base + W_STATE, MB_REQUEST);
  Atomics.store(arenaWords, data.bspStop, 1); // the boot CPU's translated code leaves soon
  ch.ring();
  while (Atomics.load(w, base + W_STATE) !== MB_DONE) {
    if (Atomics.load(w, base + W_SIGNAL) & SIG_STOP) return 0xffffffff;
    Atomics.wait(w, base + W_STATE, MB_REQUEST, 100);
  }
  const v = w[base + W_VALUE]! >>> 0;
  Atomics.store(w, base + W_STATE, MB_IDLE);
  return v;
}

/** A bus read (K_PIO_READ, K_MMIO_READ) through the mailbox. */
const reader = (kind: number) => (addr: number, size: AccessSize): number => request(kind, addr, size, 0);

const ring = ch.posted;
const rb = ap * RING_WORDS;

/**
 * A posted write (MMIO, or with POSTED_PIO a port): queued for the main thread, which does it
 * before the AP's next request.
 */
function postWrite(addr: number, size: number, value: number): void {
  posted++;
  const tail = ring[rb + 1]!;
  for (;;) {
    const head = Atomics.load(ring, rb);
    if (tail - head < RING_SLOTS) break;
    // full: wait for the main thread to take some
    Atomics.store(arenaWords, data.bspStop, 1);
    ch.ring();
    if (Atomics.load(w, base + W_SIGNAL) & SIG_STOP) return;
    Atomics.wait(ring, rb, head, 10);
  }
  const e = rb + 2 + (tail % RING_SLOTS) * 4;
  ring[e] = addr >>> 0;
  ring[e + 1] = Math.floor(addr / 4294967296);
  ring[e + 2] = size;
  ring[e + 3] = value;
  Atomics.store(ring, rb + 1, tail + 1);
  Atomics.store(arenaWords, data.bspStop, 1);
  ch.ring();
}

/** This AP's local APIC, on the main thread: pending bits mirrored in the signal word. */
const interrupts: CpuInterruptController = {
  hasInterrupt: () => (w[base + W_SIGNAL]! & SIG_IRQ) !== 0,
  acknowledge: () => request(K_ACK, 0, 0, 0) & 0xff,
  hasNmi: () => (w[base + W_SIGNAL]! & SIG_NMI) !== 0,
  takeNmi: () => (w[base + W_SIGNAL]! & SIG_NMI) !== 0 && request(K_NMI, 0, 0, 0) !== 0,
};

enableBranchHints();
nameBlocksForProfiles();
const clock = new SharedClock(data.clock);
const cpu = new Cpu({
  memory,
  mmio: { read: reader(K_MMIO_READ), write: postWrite } as never,
  // a port write waits for nothing the AP can see before its next request (which comes after
  // it): the serial console's output, PCI configuration addresses
  pio: { read: reader(K_PIO_READ), write: (port: number, size: AccessSize, value: number) => postWrite(port, size | POSTED_PIO, value) } as never,
  interrupts,
  clock,
  simd: simdUnit,
  reclaim: fullGc,
  jitThreshold: data.jitThreshold,
  vcpu: data.vcpu,
});
const translations = data.translations !== undefined ? openTranslationChannel(data.translations) : undefined;
if (translations !== undefined) cpu.shareTranslations(translations);
/** Power-on state of this AP (at start, INIT, STARTUP): its APIC ID, IA32_APIC_BASE.BSP clear. */
function resetAp(): void {
  cpu.reset();
  setCpuidApicId(cpu.s, data.vcpu);
  cpu.s.apicBase = (cpu.s.apicBase & ~APIC_BASE_BSP) >>> 0;
}

resetAp();
let waitingSipi = true;
cpu.s.halted = true;
if (data.restore) {
  applyCpu(cpu, parseCpu(data.restore.cpu, `aps[${ap}].cpu`), data.restore.clockNs);
  waitingSipi = data.restore.waitingSipi;
}

const box = ch.box(ap);

/** Paused: leave this vCPU's state in its box for a snapshot (once per pause the engine asks for). */
function saveToBox(): void {
  const asked = Atomics.load(box.head, BOX_ASKED);
  if (Atomics.load(box.head, BOX_SAVED) === asked) return;
  const json = new TextEncoder().encode(JSON.stringify({ cpu: saveCpu(cpu, clock.nowNs()), waitingSipi }));
  if (json.length <= box.bytes.length) {
    box.bytes.set(json);
    box.head[BOX_LENGTH] = json.length;
  } else box.head[BOX_LENGTH] = -1;
  Atomics.store(box.head, BOX_SAVED, asked);
}

function setRun(state: number): void {
  if (w[base + W_RUN] !== state) {
    Atomics.store(w, base + W_RUN, state);
    ch.ring();
  }
}

function loop(): void {
  for (;;) {
    const sig = Atomics.load(w, base + W_SIGNAL);
    if (sig & SIG_STOP) return;
    // INIT and STARTUP first: IPIs sent before a pause are delivered before it
    if (sig & SIG_INIT) {
      Atomics.and(w, base + W_SIGNAL, ~SIG_INIT);
      resetAp();
      cpu.s.halted = true;
      waitingSipi = true;
      continue;
    }
    if (sig & SIG_STARTUP) {
      Atomics.and(w, base + W_SIGNAL, ~SIG_STARTUP);
      if (waitingSipi) {
        waitingSipi = false;
        const vector = w[base + W_VECTOR]! & 0xff;
        resetAp();
        applyEntryState(cpu, { mode: 'real16', rip: vector << 12, realCs: vector << 8, regs: {} });
      }
      continue;
    }
    if (sig & SIG_PAUSE) {
      saveToBox();
      setRun(RUN_PAUSED);
      Atomics.wait(w, base + W_SIGNAL, sig, 1000);
      continue;
    }
    if (waitingSipi) {
      setRun(RUN_WAIT_SIPI);
      cpu.cache?.receive(); // (what the other vCPUs compile must not pile up in our port)
      Atomics.wait(w, base + W_SIGNAL, sig, 1000);
      continue;
    }
    if (cpu.s.halted) {
      const ifSet = (cpu.getRflags() & RFLAGS_IF) !== 0;
      if (!(sig & SIG_NMI) && !(ifSet && sig & SIG_IRQ)) {
        setRun(ifSet ? RUN_HALTED : RUN_HALTED_FOR_GOOD);
        cpu.cache?.receive();
        Atomics.wait(w, base + W_SIGNAL, sig, 1000);
        continue;
      }
    }
    setRun(RUN_RUNNING);
    cpu.run(BUDGET);
    if (cpu.shutdown !== undefined) {
      parentPort!.postMessage({ type: 'shutdown', detail: cpu.shutdown });
      setRun(RUN_EXITED);
      while (!(Atomics.load(w, base + W_SIGNAL) & SIG_STOP)) Atomics.wait(w, base + W_SIGNAL, Atomics.load(w, base + W_SIGNAL), 1000);
      return;
    }
  }
}

loop();
if (process.env.TYPEVISOR_BT_STATS) {
  const c = cpu.cache;
  process.stderr.write(`bt stats, vCPU ${data.vcpu}: retired ${cpu.retired}, compiled ${c?.compiled ?? 0} (${cpu.wasm?.modulesCompiled ?? 0} modules, ` +
    `${cpu.wasm?.modulesMerged ?? 0} of them merges, ${cpu.wasm?.adoptedBlocks ?? 0} blocks taken from other threads, ${c?.flushes ?? 0} flushes, ${c?.smcRefused ?? 0} refused for SMC), interpreted ${cpu.stepsRun}, faults ${cpu.faultsTaken}; ` +
    `mailbox: ${requests.get(K_PIO_READ) ?? 0} port reads, ${requests.get(K_MMIO_READ) ?? 0} MMIO reads, ${requests.get(K_ACK) ?? 0} interrupt acknowledges, ${requests.get(K_NMI) ?? 0} NMIs; ${posted} posted writes\n`);
}
translations?.close();
setRun(RUN_EXITED);
parentPort!.postMessage({ type: 'exited' });
