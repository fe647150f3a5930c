/**
 * V8 compiles a WebAssembly function lazily by default: `new WebAssembly.Module` only validates,
 * and each function is compiled (Liftoff) on its first call, on the calling thread. For the bt
 * engine that puts every merge's compile (cpu/wasm/backend.ts: blocks compiled again 256 to a
 * module) on the vCPU's thread at the moment the guest runs the block. Eagerly, a module
 * compiles whole when it is made, and a merge compiled with `WebAssembly.compile` does so on V8's
 * background thread while the guest goes on (CpuOptions.backgroundMerges). The flag is read
 * when a module compiles, so setting it at run time, before the first block, is enough; it is
 * process-wide (every isolate). Measured in docs/architecture.md ("Merges in the background").
 */
import { setFlagsFromString } from 'node:v8';

let done = false;

export function compileWasmEagerly(): void {
  if (done) return;
  setFlagsFromString('--no-wasm-lazy-compilation');
  done = true;
}
