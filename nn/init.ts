// Parameter initialisers (in place, from the seeded RNG, as torch.nn.init). Values are drawn in JS,
// so cpu and webgpu get the same numbers for the same seed.
import { normalArray, uniformArray } from '../core/rng.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { assignValues } from './inplace.js';

/** (fanIn, fanOut) as PyTorch computes them: dims 1 and 0, times the receptive field (dims 2+). */
export function fans(t: Tensor): { fanIn: number; fanOut: number } {
  if (t.rank < 2) throw new OpError('init', `fan in/out need a tensor with at least 2 dims, got ${shapeStr(t.shape)}`);
  const receptive = t.shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: t.shape[1] * receptive, fanOut: t.shape[0] * receptive };
}

export type Nonlinearity = 'linear' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu';

/** torch.nn.init.calculate_gain. */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
  }
}

export function uniform(t: Tensor, low = 0, high = 1): Tensor {
  assignValues('init.uniform', t, uniformArray(t.size, low, high));
  return t;
}

export function normal(t: Tensor, mean = 0, std = 1): Tensor {
  assignValues('init.normal', t, normalArray(t.size, mean, std));
  return t;
}

export function constant(t: Tensor, value: number): Tensor {
  assignValues('init.constant', t, new Float64Array(t.size).fill(value));
  return t;
}

export const zeros = (t: Tensor): Tensor => constant(t, 0);
export const ones = (t: Tensor): Tensor => constant(t, 1);

/** Glorot uniform: U(-b, b), b = gain·sqrt(6 / (fanIn + fanOut)). */
export function xavierUniform(t: Tensor, gain = 1): Tensor {
  const { fanIn, fanOut } = fans(t);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(t, -bound, bound);
}

export function xavierNormal(t: Tensor, gain = 1): Tensor {
  const { fanIn, fanOut } = fans(t);
  return normal(t, 0, gain * Math.sqrt(2 / (fanIn + fanOut)));
}

export interface KaimingOptions {
  /** Negative slope of the leaky ReLU that follows (default 0). */
  a?: number;
  mode?: 'fanIn' | 'fanOut';
  nonlinearity?: Nonlinearity;
}

/** He uniform: U(-b, b), b = gain·sqrt(3 / fan). nn.Linear uses a = sqrt(5), giving b = 1/sqrt(fanIn). */
export function kaimingUniform(t: Tensor, opts: KaimingOptions = {}): Tensor {
  const { fanIn, fanOut } = fans(t);
  const fan = (opts.mode ?? 'fanIn') === 'fanIn' ? fanIn : fanOut;
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  const bound = gain * Math.sqrt(3 / fan);
  return uniform(t, -bound, bound);
}

export function kaimingNormal(t: Tensor, opts: KaimingOptions = {}): Tensor {
  const { fanIn, fanOut } = fans(t);
  const fan = (opts.mode ?? 'fanIn') === 'fanIn' ? fanIn : fanOut;
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  return normal(t, 0, gain / Math.sqrt(fan));
}
