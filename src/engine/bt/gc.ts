/**
 * A full garbage collection on demand, for the bt engine's code cache: V8 frees a WebAssembly
 * module's machine code only when a full (mark-compact) GC finds the module dead, and the JS
 * heap of a running VM grows too slowly to trigger one. Without it a guest that keeps making
 * code dead (a JIT, or a flush of the code cache) grows the host's memory without bound.
 *
 * Node offers `gc()` only behind `--expose-gc`; setting the flag at run time exposes it in
 * contexts created afterwards, so the function is taken from a fresh context once.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/** Run a full garbage collection (takes tens of milliseconds on a booted guest's heap). */
export function fullGc(): void {
  if (collect === undefined) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}
