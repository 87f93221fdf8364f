// Seeded random numbers. Generated in JS so every backend sees the same numbers for the same seed.
import { argNumber } from './args.js';
let state = 0x2545f491;

/** Seeds every random op (rand, randn, randint, init, dropout) so runs repeat exactly. */
export function manualSeed(seed: number): void {
  argNumber('manualSeed', 'seed', seed, { integer: true });
  state = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
}

/** RNG state as a plain number, for checkpoints. */
export function getRngState(): number {
  return state;
}

export function setRngState(s: number): void {
  state = s >>> 0;
}

/** mulberry32: advances `state` and returns [newState, 32 random bits]. Fast, good statistical quality. */
function mulberry32(state: number): [number, number] {
  const next = (state + 0x6d2b79f5) >>> 0;
  let t = next;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [next, (t ^ (t >>> 14)) >>> 0];
}

export function nextUint32(): number {
  const [next, bits] = mulberry32(state);
  state = next;
  return bits;
}

/**
 * A private seeded stream of uniforms in [0, 1), independent of the global generator (for data order or
 * sampling that must not shift the numbers that manualSeed governs).
 */
export function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    const [next, bits] = mulberry32(s);
    s = next;
    return bits / 4294967296;
  };
}

/** Uniform in [0, 1) with 32 random bits. */
export function nextUniform(): number {
  return nextUint32() / 4294967296;
}

export function uniformArray(n: number, low = 0, high = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = low + (high - low) * nextUniform();
  return out;
}

/** Standard normals by Box–Muller (both outputs used). */
export function normalArray(n: number, mean = 0, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - nextUniform(); // (0, 1]
    const u2 = nextUniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

export function intArray(n: number, low: number, high: number): Int32Array {
  const out = new Int32Array(n);
  const span = high - low;
  for (let i = 0; i < n; i++) out[i] = low + Math.floor(nextUniform() * span);
  return out;
}
