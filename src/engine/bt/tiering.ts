/**
 * How hot a translated block must run before V8 compiles it again with TurboFan, its optimizing
 * tier (`--wasm-tiering-budget`, roughly bytes of code executed; V8 11's default 1,800,000).
 * That compile runs on V8's background thread (one: the CLI's `--v8-pool-size=1`). With one
 * vCPU the thread has a core of its own and the default is best. With vCPU threads for every
 * host core, the background thread competes with the vCPUs, and during a boot it was the busiest
 * thread of all (2 vCPUs on a 2-core host: 18–20 s of CPU over a 23–25 s boot, half of it
 * tier-up); four times the budget keeps TurboFan for the hotter code: a 2-vCPU boot of the
 * default guest 17.6 → 15.9 s (medians of 3 alternating runs, every run faster, process CPU time
 * −12%), the two-job rows of bench:smp unchanged. On one vCPU it cost process-heavy work a few
 * percent, so it is not the default. The flag is process-wide (read when a function's tier-up
 * is due): once set it holds for every VM of the process.
 */
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';

const DEFAULT_BUDGET = 1_800_000;
let raised = false;

/** A VM with `vcpuThreads` vCPUs each on a host thread of its own is starting. */
export function tierForThreads(vcpuThreads: number): void {
  if (raised || vcpuThreads < availableParallelism()) return;
  setFlagsFromString(`--wasm-tiering-budget=${4 * DEFAULT_BUDGET}`);
  raised = true;
}
