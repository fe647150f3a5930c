/**
 * When node runs with V8's perf maps (`--perf-basic-prof`, `--perf-prof`), translated blocks
 * carry their guest address as their name (`b<rip>`), so `perf report` on typevisor says which
 * guest code the host's time went to: `perf record -p PID`, then map `b...` names to symbols
 * with the guest kernel's System.map.
 */
import { labelTranslatedBlocks } from '../../cpu/wasm/backend.js';

export function nameBlocksForProfiles(): void {
  labelTranslatedBlocks(process.execArgv.some((a) => a.startsWith('--perf-basic-prof') || a.startsWith('--perf-prof')));
}
