import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // the worker reads the runner's replies between tests (see the file)
    setupFiles: ['tests/support/yield-between-tests.ts'],
    projects: [
      // every unit, integration and end-to-end test
      { extends: true, test: { name: 'main', include: ['src/**/*.test.ts', 'tests/**/*.test.ts'] } },
      // the CPU oracle once more with every block translated to WebAssembly on first execution
      'tests/cpu-oracle/wasm.vitest.config.ts',
      // the oracle of the LOCKable instructions with guest RAM shared (atomic LOCK)
      'tests/cpu-oracle/shared.vitest.config.ts',
    ],
  },
});
