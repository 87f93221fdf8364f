import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Autotuning off: the tests assert the heuristics' choices (test/core-autotune.test.ts turns it on).
    env: { XDG_RUNTIME_DIR: '/tmp', DAWNGRAD_SILENCE_LEAKS: '1', DAWNGRAD_AUTOTUNE: 'off' },
  },
});
