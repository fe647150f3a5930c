/**
 * Test-only worker (threads.test.ts): one vCPU on its own thread over a shared guest RAM. It
 * builds a Cpu on the arena's state area `vcpu`, enters long mode at `rip` with RDI = vcpu and
 * RSI = iterations, runs until HLT, and posts its registers back.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Cpu } from './cpu.js';
import { GuestMemory } from '../../machine/memory.js';
import { Bus } from '../../machine/bus.js';
import { attachArena } from '../wasm/arena.js';
import { ScriptedInterrupts, StepClock, enterLongMode, STACK_TOP } from './test-machine.js';
import { openTranslationChannel } from '../../engine/bt/translation-channel.js';

interface Job {
  memory: WebAssembly.Memory;
  ramSize: number;
  vcpus: number;
  vcpu: number;
  rip: number;
  iterations: number;
  jitThreshold: number;
  /**
   * Word 0 of this Int32Array non-zero: start (all vCPUs together). With `sequential`, vCPU k
   * waits for word 3 to be k instead, and sets word 2 to k + 1 when it halted.
   */
  go: SharedArrayBuffer;
  sequential?: boolean;
  /** Share translated modules with the other threads through these ports (wasm/share.ts). */
  share?: MessagePort[];
}

const job = workerData as Job;
const memory = new GuestMemory([{ base: 0, size: job.ramSize, buffer: attachArena(job.memory, job.ramSize, job.vcpus) }]);
const pio = new Bus('pio');
const mmio = new Bus('mmio');
const irq = new ScriptedInterrupts();
const clock = new StepClock();
const cpu = new Cpu({ memory, pio, mmio, interrupts: irq, clock, jitThreshold: job.jitThreshold, vcpu: job.vcpu });
enterLongMode({ cpu, memory, pio, mmio, irq, clock }, job.rip);
const g = cpu.s.gpr;
g[2 * 7] = job.vcpu; // RDI
g[2 * 6] = job.iterations; // RSI
g[2 * 4] = STACK_TOP - job.vcpu * 0x4000; // RSP: a stack of its own
const channel = job.share !== undefined ? openTranslationChannel(job.share) : undefined;
if (channel !== undefined) cpu.shareTranslations(channel);
const go = new Int32Array(job.go);
Atomics.add(go, 1, 1);
if (job.sequential) while (Atomics.load(go, 3) !== job.vcpu) Atomics.wait(go, 3, Atomics.load(go, 3), 50);
else Atomics.wait(go, 0, 0);
let n = 0;
while (!cpu.s.halted && n < 2e9) n += cpu.run(100_000);
Atomics.store(go, 2, job.vcpu + 1);
Atomics.notify(go, 2);
parentPort!.postMessage({ gpr: Array.from(g), retired: n, shutdown: cpu.shutdown, compiled: cpu.cache?.compiled ?? 0, adopted: cpu.wasm?.adoptedBlocks ?? 0 });
channel?.close();
