// Shared by the optimizer tests.

/** Deterministic pseudo-random values in [-scale, scale) for parameters and gradients (independent of the library RNG). */
export function values(n: number, seed: number, scale = 1): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}
