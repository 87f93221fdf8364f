// Rotary position embeddings (HF rotate_half layout) with partial rotary, fused forward and
// backward (WGSL in kernels.ts; the cpu path is the same maths in float64).
import type { View } from '../../core/backend.js';
import { record } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { RO, rotarySource } from './kernels.js';
import { cat } from '../movement.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
import { broadcastView, empty, sumTo } from '../util.js';

export interface RotaryOptions {
  /** How many leading dims of the last axis rotate (even, ≤ head dim); default cos.shape[-1]. */
  rotaryDim?: number;
}

/** rotate_half over the last axis: cat(−v[h:], v[:h]). */
function rotateHalf(v: Tensor): Tensor {
  const h = v.shape[v.rank - 1] / 2;
  return cat([v.narrow(-1, h, h).neg(), v.narrow(-1, 0, h)], -1);
}

/** One pass of the kernel: forward rotation of x, or the transposed rotation of a gradient. */
function rotate(direction: 'forward' | 'backward', xc: Tensor, cos: View, sin: View, R: number): Tensor {
  const D = xc.shape[xc.rank - 1];
  const out = empty(xc.device, xc.dtype, xc.shape);
  const n = xc.size;
  if (xc.device === 'cpu') {
    const { data: xd, off: xo } = cpuData(xc);
    const cd = cpuData(cos as Tensor).data, sd = cpuData(sin as Tensor).data;
    const o = outData(out);
    const lead = xc.shape.slice(0, -1);
    const idx = new Array<number>(lead.length).fill(0);
    const h = R / 2;
    for (let row = 0; row * D < n; row++) {
      let co = cos.offset, so = sin.offset;
      lead.forEach((_, d) => { co += idx[d] * cos.strides[d]; so += idx[d] * sin.strides[d]; });
      const cl = cos.strides[lead.length], sl = sin.strides[lead.length];
      const b = xo + row * D;
      for (let j = 0; j < D; j++) {
        if (j >= R) { o[row * D + j] = xd[b + j]; continue; }
        const p = j < h ? j + h : j - h;
        const rotated = direction === 'forward'
          ? (j < h ? -xd[b + p] : xd[b + p]) * sd[so + j * sl]
          : (j < h ? xd[b + p] : -xd[b + p]) * sd[so + p * sl];
        o[row * D + j] = xd[b + j] * cd[co + j * cl] + rotated;
      }
      for (let d = lead.length - 1; d >= 0; d--) {
        if (++idx[d] < lead[d]) break;
        idx[d] = 0;
      }
    }
  } else if (n > 0) {
    const p = RO.pack({ N: n, D, R, RANK: xc.rank, XOFF: xc.offset, COFF: cos.offset, SOFF: sin.offset, SHAPE: xc.shape, CSTR: cos.strides, SSTR: sin.strides });
    launch(direction === 'forward' ? 'applyRotary' : 'applyRotaryBackward', `fused:rotary:${direction}`, () => rotarySource(direction), p, [out, xc, cos, sin], itemGrid(n));
  }
  return out;
}

/**
 * x' = x·cos + rotate_half(x)·sin on the first rotaryDim dims of x's last axis (the rest pass
 * through). cos/sin are [..., rotaryDim] broadcastable to x.shape[:-1] (e.g. [T, R] for x [B, H, T, D]:
 * one row per position). Differentiable in x, cos and sin.
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions = {}): Tensor {
  for (const t of [x, cos, sin]) t.assertAlive('applyRotary');
  if (!isFloat(x.dtype) || x.rank < 1) throw new OpError('applyRotary', `x must be a float tensor of rank ≥ 1, got ${x.dtype} ${shapeStr(x.shape)}`);
  if (x.device === 'webgpu' && x.rank > 8) throw new OpError('applyRotary', `tensors of rank ${x.rank} are not supported on webgpu (max 8)`);
  const D = x.shape[x.rank - 1];
  const R = opts.rotaryDim ?? cos.shape[cos.rank - 1];
  if (!Number.isInteger(R) || R % 2 !== 0 || R <= 0 || R > D) throw new OpError('applyRotary', `rotaryDim must be a positive even integer ≤ head dim ${D}, got ${R}`);
  const tableShape = [...x.shape.slice(0, -1), R];
  for (const [name, t] of [['cos', cos], ['sin', sin]] as const) {
    if (t.device !== x.device || t.dtype !== x.dtype) throw new OpError('applyRotary', `${name} is ${t.dtype} on ${t.device} but x is ${x.dtype} on ${x.device}`);
    const fits = t.rank >= 1 && t.rank <= tableShape.length && t.shape.every((d, i) => d === 1 || d === tableShape[tableShape.length - t.rank + i]);
    if (!fits || t.shape[t.rank - 1] !== R) {
      throw new OpError('applyRotary', `${name} ${shapeStr(t.shape)} must broadcast to ${shapeStr(tableShape)} (x ${shapeStr(x.shape)} with rotaryDim ${R})`);
    }
  }
  const needTables = cos.requiresGrad || sin.requiresGrad;
  return withContiguous([x], ([xc]) => {
    const y = rotate('forward', xc, broadcastView(cos, tableShape), broadcastView(sin, tableShape), R);
    return record('applyRotary', y, [x, cos, sin], (g, [cs, sn, xs]) => withContiguous([g], ([gc]) => {
      const dx = rotate('backward', gc, broadcastView(cs, tableShape), broadcastView(sn, tableShape), R);
      if (!needTables) return [dx, null, null];
      const gr = gc.narrow(-1, 0, R);
      const xr = xs.narrow(-1, 0, R);
      return [dx, sumTo(gr.mul(xr), cos.shape), sumTo(gr.mul(rotateHalf(xr)), sin.shape)];
    }), needTables ? [cos, sin, xc] : [cos, sin]);
  });
}
