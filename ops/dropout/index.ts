// Inverted dropout with a counter-based RNG (same mask on cpu and webgpu); the WGSL is in
// kernels.ts, the RNG (JS and WGSL, shared with attention's dropout) in counter-rng.ts.
import { record } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { nextUint32 } from '../../core/rng.js';
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { counterUniform } from './counter-rng.js';
import { DO, dropoutSource } from './kernels.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
import { empty } from '../util.js';

/** Zeroes elements where counter_uniform(seed, i) < p and scales the rest by 1/(1 − p). */
function dropoutMask(x: Tensor, p: number, seed: number): Tensor {
  return withContiguous([x], ([xc]) => {
    const out = empty(x.device, x.dtype, x.shape);
    const scale = p >= 1 ? 0 : 1 / (1 - p);
    const n = x.size;
    if (x.device === 'cpu') {
      const { data, off } = cpuData(xc);
      const o = outData(out);
      for (let i = 0; i < n; i++) o[i] = counterUniform(seed, i) >= p ? data[off + i] * scale : 0;
    } else if (n > 0) {
      const prm = DO.pack({ N: n, XOFF: xc.offset, SEED: seed, P: p, SCALE: scale });
      launch('dropout', 'fused:dropout', dropoutSource, prm, [out, xc], itemGrid(n));
    }
    return out;
  });
}

/**
 * Inverted dropout: in training, each element is zeroed with probability p and the rest scaled by
 * 1/(1 − p); identity otherwise. The mask comes from a seed drawn from the global generator
 * (reproducible after manualSeed) hashed with each element's index, so cpu and webgpu agree and
 * the backward recomputes it instead of storing it.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  x.assertAlive('dropout');
  if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p}`);
  if (!isFloat(x.dtype)) throw new OpError('dropout', `needs a float tensor, got ${x.dtype}`);
  if (!training || p === 0) return x;
  const seed = nextUint32();
  const y = dropoutMask(x, p, seed);
  return record('dropout', y, [x], (g) => [dropoutMask(g, p, seed)]);
}
