// WGSL for joining windows along one axis in a single dispatch: each output element finds the part
// its axis coordinate falls in and copies from that part's buffer (read through its strides) or writes
// the part's fill value. Part p's offset is precomputed as BASE[p] = offset − start·stride_axis (u32
// arithmetic wraps, so the sum over the coordinates lands on the right element).
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

/** Parts one dispatch joins, and the rank it handles (params words are limited). */
export const JOIN_MAX_PARTS = 4;
export const JOIN_MAX_RANK = 8;

export const JN = uniformLayout({
  N: 'u32',
  RANK: 'u32',
  PARTS: 'u32',
  AXIS: 'u32',
  INNER: 'u32',
  FILLED: 'u32',
  SHAPE: ['u32', JOIN_MAX_RANK],
  START: ['u32', JOIN_MAX_PARTS],
  BASE: ['u32', JOIN_MAX_PARTS],
  FILL: ['u32', JOIN_MAX_PARTS],
  STR: ['u32', JOIN_MAX_PARTS * JOIN_MAX_RANK],
});

/**
 * `tensors` parts are bound as src0.. in order; FILLED has bit p set when part p is a fill value (its
 * bits as i32 or f32: f16 outputs store the f32 fill rounded).
 */
export function joinSource(t: WType, tensors: number): string {
  const sources = Array.from({ length: tensors }, (_, k) => `var<storage, read> src${k}: array<${t}>`);
  return `${kernelHeader([`var<storage, read_write> out: array<${t}>`, ...sources])}
${itemMain(`  if (item >= ${JN.read('N')}) { return; }
  let parts = ${JN.read('PARTS')};
  let along = (item / ${JN.read('INNER')}) % ${JN.read('SHAPE', JN.read('AXIS'))};
  var part = 0u;
  for (var p = 1u; p < parts; p++) { if (along >= ${JN.read('START', 'p')}) { part = p; } }
  if (((${JN.read('FILLED')} >> part) & 1u) == 1u) {
    out[item] = ${t === 'f16' ? `f16(bitcast<f32>(${JN.read('FILL', 'part')}))` : `bitcast<${t}>(${JN.read('FILL', 'part')})`};
    return;
  }
  // Only the chosen part's offset: one pass over the dims.
  var off = ${JN.read('BASE', 'part')};
  var rem = item;
  for (var d = i32(${JN.read('RANK')}) - 1; d >= 0; d--) {
    let du = u32(d);
    let c = rem % ${JN.read('SHAPE', 'du')};
    rem = rem / ${JN.read('SHAPE', 'du')};
    off += c * ${JN.read('STR', `part * ${JOIN_MAX_RANK}u + du`)};
  }
  // Tensor parts are bound in order, skipping fills: the k-th tensor part is src k.
  let k = countOneBits(~${JN.read('FILLED')} & ((1u << part) - 1u));
  switch k {
${Array.from({ length: tensors }, (_, k) => `    case ${k}u: { out[item] = src${k}[off]; }`).join('\n')}
    default: { }
  }`)}`;
}
