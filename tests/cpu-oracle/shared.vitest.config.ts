/**
 * Runs the CPU oracle tests of the instructions that take LOCK (the ALU and bit operations) with
 * every block translated and guest RAM shared, as for vCPUs on several threads: LOCKed forms then
 * run as wasm atomics (src/cpu/wasm/atomic.ts) or as the interpreter's transactions
 * (src/cpu/core/atomic.ts), whose results and flags must still match the host CPU's.
 * `npx vitest run --config tests/cpu-oracle/shared.vitest.config.ts`.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'oracle-shared',
    root: new URL('../..', import.meta.url).pathname,
    include: ['tests/cpu-oracle/alu.test.ts', 'tests/cpu-oracle/bits.test.ts', 'tests/cpu-oracle/moves.test.ts'],
    env: { TYPEVISOR_ORACLE_JIT_THRESHOLD: '1', TYPEVISOR_ORACLE_SHARED_RAM: '1' },
    testTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { execArgv: ['--experimental-wasm-branch-hinting'] } },
    setupFiles: ['tests/support/yield-between-tests.ts'],
  },
});
