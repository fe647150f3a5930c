/** What a Cpu is built from (CpuOptions) and the core's own error. */
import type { SimdUnit } from '../simd-api.js';
import type { GuestMemory } from '../../machine/memory.js';
import type { Bus } from '../../machine/bus.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import type { Clock } from '../../machine/clock.js';

export interface CpuOptions {
  memory: GuestMemory;
  pio: Bus;
  mmio: Bus;
  interrupts: CpuInterruptController;
  clock: Clock;
  simd?: SimdUnit;
  /**
   * Called (between slices) after translated code was dropped in bulk or enough of it was
   * invalidated: the host runs a full garbage collection so that the engine's compiled code is
   * really freed (V8 frees a wasm module's code only when a full GC finds the module dead, and
   * a guest can make dead modules far faster than minor GCs notice).
   */
  reclaim?: () => void;
  /**
   * Executions of a 64-bit block start before the block is translated to WebAssembly (1: on
   * first execution, as the translator tests want); Infinity: never — interpret only. Default
   * DEFAULT_JIT_THRESHOLD. Translation needs the first RAM region in a wasm arena
   * (cpu/wasm/arena.ts); without one the CPU interprets.
   */
  jitThreshold?: number;
  /**
   * This CPU's index among the machine's vCPUs (default 0): which state area of the wasm arena
   * it takes (cpu/wasm/arena.ts; the arena must have been made with enough of them).
   */
  vcpu?: number;
  /**
   * Compile merged block modules in the background (`WebAssembly.compile`) and put them in
   * place when they are ready, instead of on this thread while the guest waits. Only for a
   * CPU whose thread returns to its event loop between slices (the engine's main thread):
   * elsewhere a compile's promise would never settle. Needs V8's eager compilation
   * (`--no-wasm-lazy-compilation`, engine/bt/eager-compile.ts), or the functions would still be
   * compiled on first call, on this thread.
   */
  backgroundMerges?: boolean;
}

/** Block-start executions before a block is translated, unless CpuOptions.jitThreshold says otherwise. */
export const DEFAULT_JIT_THRESHOLD = 256;

export class CpuCoreError extends Error {
  override name = 'CpuCoreError';
}
