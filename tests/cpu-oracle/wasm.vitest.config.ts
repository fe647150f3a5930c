/**
 * Runs the CPU oracle tests (tests/cpu-oracle) with every block translated to WebAssembly on
 * first execution: `npx vitest run --config tests/cpu-oracle/wasm.vitest.config.ts`.
 * (The main project runs them interpreted; emulated.ts reads the threshold from the environment.)
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'oracle-wasm',
    root: new URL('../..', import.meta.url).pathname,
    include: ['tests/cpu-oracle/**/*.test.ts'],
    env: { TYPEVISOR_ORACLE_JIT_THRESHOLD: '1' },
    testTimeout: 60_000,
    pool: 'forks',
    // the bt engine turns V8's branch hints on (src/engine/bt/branch-hints.ts): so does the
    // oracle, so the translated code it checks is the code the engine runs
    poolOptions: { forks: { execArgv: ['--experimental-wasm-branch-hinting'] } },
    setupFiles: ['tests/support/yield-between-tests.ts'],
  },
});
