import { defineConfig } from 'vitest/config';

// Autotuning off: the tests assert the heuristics' choices (test/core-autotune.test.ts turns it on).
const ENV = { XDG_RUNTIME_DIR: '/tmp', DAWNGRAD_SILENCE_LEAKS: '1', DAWNGRAD_AUTOTUNE: 'off' };

/**
 * The kernel and model tests, run a second time with every automatic choice made as on a real GPU
 * (DAWNGRAD_PROFILE=hardware: workgroup row kernels, shared-memory matmul, tiled-attention thresholds,
 * norm chunking, elementwise fusion), so CI on lavapipe covers the paths a GPU takes. Fusion compiles
 * shaders of its own (seconds each on lavapipe), so the fuzzer and the long ODE and script tests stay out
 * (README, "Running on a GPU").
 */
const HARDWARE_PROFILE_TESTS = [
  'test/ops-*.test.ts',
  'test/models-decoders.test.ts',
  'test/models-llama-joint.test.ts',
  'test/models-clex-kernels.test.ts',
];

// `npx vitest run test/x.test.ts` runs a file in every project that includes it; add `--project default`
// for the adapter's own choices only.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'default', include: ['test/**/*.test.ts'], env: ENV } },
      {
        extends: true,
        test: {
          name: 'hardware-profile',
          include: HARDWARE_PROFILE_TESTS,
          env: { ...ENV, DAWNGRAD_PROFILE: 'hardware' },
        },
      },
    ],
  },
});
