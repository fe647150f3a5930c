/**
 * Test-only worker (threads.test.ts): one vCPU on its own thread over a shared guest RAM. It
 * builds a Cpu on the arena's state area `vcpu`, enters long mode at `rip` with RDI = vcpu and
 * RSI = iterations, runs until HLT, and posts its registers back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Cpu } from './cpu.js';
import { GuestMemory } from '../../machine/memory.js';
import { Bus } from '../../machine/bus.js';
import { attachArena } from '../wasm/arena.js';
import { ScriptedInterrupts, StepClock, enterLongMode, STACK_TOP } from './test-machine.js';

interface Job {
  memory: WebAssembly.Memory;
  ramSize: number;
  vcpus: number;
  vcpu: number;
  rip: number;
  iterations: number;
  jitThreshold: number;
  /** Wait until this Int32Array word (over `go`) is non-zero, so all vCPUs start together. */
  go: SharedArrayBuffer;
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
const go = new Int32Array(job.go);
Atomics.add(go, 1, 1);
Atomics.wait(go, 0, 0);
let n = 0;
while (!cpu.s.halted && n < 2e9) n += cpu.run(100_000);
parentPort!.postMessage({ gpr: Array.from(g), retired: n, shutdown: cpu.shutdown });
