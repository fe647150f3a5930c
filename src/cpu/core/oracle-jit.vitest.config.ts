/**
 * Runs the CPU oracle tests (tests/cpu-oracle) with the block translator forced on, so every
 * oracle case also checks the translated code: `npx vitest run --config src/cpu/core/oracle-jit.vitest.config.ts`.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'oracle-jit',
    root: new URL('../../..', import.meta.url).pathname,
    include: ['tests/cpu-oracle/**/*.test.ts'],
    setupFiles: ['src/cpu/core/jit-setup.test-helper.ts'],
    testTimeout: 60_000,
    pool: 'forks',
  },
});
