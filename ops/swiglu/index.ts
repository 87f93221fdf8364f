// SwiGLU's backward as one fused op: d/dgate and d/dup of silu(gate)·up, times the incoming gradient,
// in one dispatch on webgpu (kernels.ts), a float64 loop on cpu. The forward is the elementwise row
// 'swiglu' (ops/elementwise), whose backward rule calls this.
import { noGrad } from '../../core/autograd.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
import { broadcastView, empty } from '../util.js';
import { SG, swigluBackwardSource } from './kernels.js';

const sigmoid = (a: number) => 1 / (1 + Math.exp(-a));

/**
 * [dgate, dup] at g's shape (the output's; gate and up broadcast to it, read in place), each null
 * unless `needs` asks for it. Outside autograd (a backward rule's kernel).
 */
export function swigluBackward(g: Tensor, gate: Tensor, up: Tensor, needs: readonly [boolean, boolean]): [Tensor | null, Tensor | null] {
  // Ranks past the kernel's MAX_RANK never get here: the forward rejected them on webgpu.
  const shape = g.shape;
  const [dgate, dup] = needs.map((need) => (need ? empty(g.device, g.dtype, shape) : null));
  if (!dgate && !dup) return [null, null];
  if (g.device === 'cpu') {
    const full = noGrad(() => [gate.expand(shape), up.expand(shape)]);
    withContiguous([g, ...full], ([gc, ac, bc]) => {
      const [gd, ad, bd] = [gc, ac, bc].map(cpuData);
      const [dg, du] = [dgate && outData(dgate), dup && outData(dup)];
      for (let i = 0; i < g.size; i++) {
        const gv = gd.data[gd.off + i], a = ad.data[ad.off + i], s = sigmoid(a);
        if (dg) dg[i] = gv * bd.data[bd.off + i] * s * (1 + a * (1 - s));
        if (du) du[i] = gv * a * s;
      }
    });
  } else if (g.size > 0) {
    const [a, b] = [broadcastView(gate, shape), broadcastView(up, shape)];
    const params = SG.pack({
      N: g.size, RANK: shape.length, SHAPE: shape,
      GOFF: g.offset, AOFF: a.offset, BOFF: b.offset, GSTR: g.strides, ASTR: a.strides, BSTR: b.strides,
    });
    const v = { gate: dgate !== null, up: dup !== null };
    const bound = [...(dgate ? [dgate] : []), ...(dup ? [dup] : []), g, a, ...(dgate ? [b] : [])];
    launch('swigluBackward', `fused:swiglu:backward:${v.gate}:${v.up}`, () => swigluBackwardSource(v), params, bound, itemGrid(g.size));
  }
  return [dgate, dup];
}
