/**
 * Translated blocks mark their slow paths (TLB misses, faults, stops, the interpreter's
 * fallbacks) as unlikely with WebAssembly branch hints (`metadata.code.branch_hint`), and
 * V8's optimizing tier then lays that code out after the block's fast path. Node 20's V8 reads
 * the section only with `--experimental-wasm-branch-hinting`; the flag is read when a module
 * compiles, so setting it at run time, before the first block, is enough — an SDK user gets
 * the same code as the CLI. Without the flag the section is ignored (hints never change what
 * code does). Measured in docs/architecture.md ("Branch hints").
 *
 * Only on the V8 of Node 20 and 21 (11.x), where the flag was checked: V8 prints "unrecognized
 * flag" to stderr for a flag it does not know, so a newer V8 gets the flag when someone has
 * checked it there (or ships hints without it).
 */
import { setFlagsFromString } from 'node:v8';

const V8_WITH_FLAG = Number(process.versions.v8.split('.')[0]) === 11;
let done = false;

export function enableBranchHints(): void {
  if (done || !V8_WITH_FLAG) return;
  setFlagsFromString('--experimental-wasm-branch-hinting');
  done = true;
}
