// WGSL for dropout with a counter-based RNG: element i of the contiguous input is kept when
// counter_uniform(seed, i) ≥ p and scaled by 1/(1 − p). The backward runs the same kernel on the
// gradient with the same seed, so no mask is stored.
import { WGSL_COUNTER_RNG } from './counter-rng.js';
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

/** Params: SCALE = 1/(1 − P). */
export const DO = uniformLayout({ N: 'u32', XOFF: 'u32', SEED: 'u32', P: 'f32', SCALE: 'f32' });

/** `t`: the storage type of x and out (the scaling is done in f32). */
export function dropoutSource(t: WType): string {
  return `${kernelHeader([`var<storage, read_write> out: array<${t}>`, `var<storage, read> x: array<${t}>`])}
${WGSL_COUNTER_RNG}
${itemMain(`
  if (item >= pu(${DO.N}u)) { return; }
  let keep = counter_uniform(pu(${DO.SEED}u), item) >= pf(${DO.P}u);
  out[item] = ${t}(select(0.0, f32(x[pu(${DO.XOFF}u) + item]) * pf(${DO.SCALE}u), keep));`)}`;
}
