// Counter-based random numbers for dropout: a PCG hash of (seed, element counter), identical in JS
// (cpu backend) and WGSL, so both backends drop the same elements for the same seed.

/** Counter-based random bits shared by every backend: a PCG hash of (seed, counter). */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** Uniform in [0, 1) with 24 bits (exact in f32), from the seed and a per-element counter. */
export function counterUniform(seed: number, counter: number): number {
  return (pcgHash((counter + pcgHash(seed)) >>> 0) >>> 8) / 16777216;
}

/** The same as WGSL helpers (u32 arithmetic wraps like the JS version above). */
export const WGSL_COUNTER_RNG = `
fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn counter_uniform(seed: u32, counter: u32) -> f32 {
  return f32(pcg_hash(counter + pcg_hash(seed)) >> 8u) / 16777216.0;
}`;
