// Inverted dropout with a counter-based RNG (same mask on cpu and webgpu), as an op record; the WGSL
// is in kernels.ts, the RNG (JS and WGSL, shared with attention's dropout) in counter-rng.ts.
import { argTensor } from '../../core/args.js';
import { isFloat } from '../../core/dtype.js';
import { defineKernel, defineOp, dispatch } from '../../core/op.js';
import { nextUint32 } from '../../core/rng.js';
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import { counterUniform } from './counter-rng.js';
import { DO, dropoutSource } from './kernels.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
import { empty } from '../util.js';

const dropScale = (p: number) => (p >= 1 ? 0 : 1 / (1 - p));

interface DropoutArgs {
  readonly x: Tensor;
  readonly out: Tensor;
  readonly p: number;
  readonly seed: number;
}

/** out = x where counter_uniform(seed, i) ≥ p, scaled by 1/(1 − p); 0 elsewhere (x contiguous). */
const dropoutKernel = defineKernel<DropoutArgs>({
  name: 'dropout',
  family: 'dropout',
  float16: true,
  cpu: ({ x, out, p, seed }) => {
    const { data, off } = cpuData(x);
    const o = outData(out);
    const scale = dropScale(p);
    for (let i = 0; i < x.size; i++) o[i] = counterUniform(seed, i) >= p ? data[off + i] * scale : 0;
  },
  webgpu: [
    {
      name: 'item',
      run: ({ x, out, p, seed }) => {
        const prm = DO.pack({ N: x.size, XOFF: x.offset, SEED: seed, P: p, SCALE: dropScale(p) });
        const t = storageTypeOf(x.dtype);
        launch('dropout', `fused:dropout:${t}`, () => dropoutSource(t), prm, [out, x], itemGrid(x.size));
      },
    },
  ],
});

/** x with the mask of (p, seed) applied: the forward, and the backward on the gradient. */
function dropoutMask(x: Tensor, p: number, seed: number): Tensor {
  return withContiguous([x], ([xc]) => {
    const out = empty(x.device, x.dtype, x.shape);
    if (x.size > 0) dispatch(dropoutKernel, x.device, { x: xc, out, p, seed });
    return out;
  });
}

interface DropoutInfo {
  readonly p: number;
  readonly seed: number;
}

const dropoutOp = defineOp<[x: Tensor, p: number, training: boolean], DropoutInfo>({
  name: 'dropout',
  check: (x, p) => {
    argTensor('dropout', 'x', x);
    if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p}`);
    if (!isFloat(x.dtype)) throw new OpError('dropout', `needs a float tensor, got ${x.dtype}`);
  },
  forward: (x, p, training) => {
    if (!training || p === 0) return { out: x };
    const seed = nextUint32();
    return { out: dropoutMask(x, p, seed), inputs: [x], info: { p, seed } };
  },
  // The same mask (same seed) on the gradient: nothing is stored.
  backward: (g, _, { p, seed }) => [dropoutMask(g, p, seed)],
  kernels: [dropoutKernel],
  // The checks' defaults: both backends drop the same elements; kept values differ by float32 rounding
  // (float16: by one f16 rounding of x/(1 − p), 2^-11 relative).
  tolerance: { float16: { atol: 1e-3, rtol: 2e-3 } },
});

/**
 * Inverted dropout: in training, each element is zeroed with probability p and the rest scaled by
 * 1/(1 − p); identity otherwise. The mask comes from a seed drawn from the global generator
 * (reproducible after manualSeed) hashed with each element's index, so cpu and webgpu agree and
 * the backward recomputes it instead of storing it.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  return dropoutOp(x, p, training);
}
