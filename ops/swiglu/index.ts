// SwiGLU's backward as one fused kernel: d/dgate and d/dup of silu(gate)·up, times the incoming
// gradient, in one dispatch on webgpu (kernels.ts), a float64 loop on cpu. The forward is the
// elementwise row 'swiglu' (ops/elementwise), whose backward rule calls this.
import type { View } from '../../core/backend.js';
import { cpuDataOf, forEachOffset } from '../../core/cpu.js';
import { defineKernel, dispatch } from '../../core/op.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { MAX_RANK, storageTypeOf } from '../../core/webgpu/wgsl.js';
import { outData } from '../kernelio.js';
import { broadcastView, empty } from '../util.js';
import { SG, swigluBackwardSource } from './kernels.js';

const sigmoid = (a: number) => 1 / (1 + Math.exp(-a));

interface SwigluBackwardArgs {
  /** The output's gradient; gate and up are views broadcast to its shape (read through strides). */
  readonly g: Tensor;
  readonly gate: View;
  readonly up: View;
  /** Dense at g's shape; null when not asked for. */
  readonly dgate: Tensor | null;
  readonly dup: Tensor | null;
}

const swigluBackwardKernel = defineKernel<SwigluBackwardArgs>({
  name: 'swigluBackward',
  family: 'swiglu',
  float16: true,
  cpu: ({ g, gate, up, dgate, dup }) => {
    const [gd, ad, bd] = [g, gate, up].map(cpuDataOf);
    const [dg, du] = [dgate && outData(dgate), dup && outData(dup)];
    let i = 0;
    forEachOffset(
      g.shape,
      [g.strides, gate.strides, up.strides],
      [g.offset, gate.offset, up.offset],
      ([go, ao, bo]) => {
        const gv = gd[go],
          a = ad[ao],
          s = sigmoid(a);
        if (dg) dg[i] = gv * bd[bo] * s * (1 + a * (1 - s));
        if (du) du[i] = gv * a * s;
        i++;
      },
    );
  },
  webgpu: [
    {
      name: 'strided',
      // The uniforms hold MAX_RANK dims (the forward rejects higher ranks on webgpu).
      fits: ({ g }) => g.rank <= MAX_RANK,
      run: ({ g, gate, up, dgate, dup }) => {
        const params = SG.pack({
          N: g.size,
          RANK: g.rank,
          SHAPE: g.shape,
          GOFF: g.offset,
          AOFF: gate.offset,
          BOFF: up.offset,
          GSTR: g.strides,
          ASTR: gate.strides,
          BSTR: up.strides,
        });
        const v = { gate: dgate !== null, up: dup !== null };
        const bound = [...(dgate ? [dgate] : []), ...(dup ? [dup] : []), g, gate, ...(dgate ? [up] : [])];
        const types = { g: storageTypeOf(g.dtype), gate: storageTypeOf(gate.dtype), up: storageTypeOf(up.dtype) };
        launch(
          'swigluBackward',
          `fused:swiglu:backward:${v.gate}:${v.up}:${types.g}:${types.gate}:${types.up}`,
          () => swigluBackwardSource(v, types),
          params,
          bound,
          itemGrid(g.size),
        );
      },
    },
  ],
});

/**
 * [dgate, dup] at g's shape (the output's; gate and up broadcast to it, read in place), each null
 * unless `needs` asks for it. Outside autograd (a backward rule's kernel).
 */
export function swigluBackward(
  g: Tensor,
  gate: Tensor,
  up: Tensor,
  needs: readonly [boolean, boolean],
): [Tensor | null, Tensor | null] {
  const [dgate, dup] = needs.map((need) => (need ? empty(g.device, g.dtype, g.shape) : null));
  if ((dgate || dup) && g.size > 0) {
    dispatch(swigluBackwardKernel, g.device, {
      g,
      gate: broadcastView(gate, g.shape),
      up: broadcastView(up, g.shape),
      dgate,
      dup,
    });
  }
  return [dgate, dup];
}
