/**
 * Runs the CPU oracle tests (tests/cpu-oracle) with every block translated to WebAssembly on
 * first execution: `npx vitest run --config src/cpu/core/oracle-wasm.vitest.config.ts`.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'oracle-wasm',
    root: new URL('../../..', import.meta.url).pathname,
    include: ['tests/cpu-oracle/**/*.test.ts'],
    setupFiles: ['src/cpu/core/wasm-setup.test-helper.ts'],
    testTimeout: 60_000,
    pool: 'forks',
  },
});
