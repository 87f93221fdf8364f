// WGSL for SwiGLU's backward: both input gradients of silu(gate)·up in one pass over the output,
// reading g, gate and up through strides (gate and up may be views of one joint projection, or
// broadcast with stride 0), writing each requested gradient dense at the output's shape.
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import { MAX_RANK, unravel, type WType } from '../../core/webgpu/wgsl.js';

/** Params: N output elements of rank RANK and SHAPE; per operand (g, gate, up) its offset and strides over SHAPE. */
export const SG = uniformLayout({
  N: 'u32',
  RANK: 'u32',
  SHAPE: ['u32', MAX_RANK],
  GOFF: 'u32',
  AOFF: 'u32',
  BOFF: 'u32',
  GSTR: ['u32', MAX_RANK],
  ASTR: ['u32', MAX_RANK],
  BSTR: ['u32', MAX_RANK],
});

/** Which gradients one dispatch writes (an unused one is neither bound nor computed). */
export interface SwigluGrads {
  gate: boolean;
  up: boolean;
}

/**
 * Bindings: dgate and/or dup, then g, gate, and up (only the gate gradient reads it), each of its
 * storage type in `types` (the gradients of g's; computed in f32).
 */
export function swigluBackwardSource(v: SwigluGrads, types: { g: WType; gate: WType; up: WType }): string {
  const t = types.g;
  const rw = (n: string) => `var<storage, read_write> ${n}: array<${t}>`;
  const ro = (n: 'g' | 'gate' | 'up') => `var<storage, read> ${n}: array<${types[n]}>`;
  const bindings = [
    ...(v.gate ? [rw('dgate')] : []),
    ...(v.up ? [rw('dup')] : []),
    ro('g'),
    ro('gate'),
    ...(v.gate ? [ro('up')] : []),
  ];
  return `${kernelHeader(bindings)}
${itemMain(`
  if (item >= pu(${SG.N}u)) { return; }
  var go = pu(${SG.GOFF}u);
  var ao = pu(${SG.AOFF}u);
  var bo = pu(${SG.BOFF}u);
  ${unravel('item', SG.RANK, SG.SHAPE, [
    ['go', SG.GSTR],
    ['ao', SG.ASTR],
    ['bo', SG.BSTR],
  ])}
  let gv = f32(g[go]);
  let a = f32(gate[ao]);
  let s = 1.0 / (1.0 + exp(-a));
  ${v.gate ? `dgate[item] = ${t}(gv * f32(up[bo]) * s * (1.0 + a * (1.0 - s)));` : ''}
  ${v.up ? `dup[item] = ${t}(gv * a * s);` : ''}`)}`;
}
