// Bad input at public boundaries: each case raises an error naming the function and the argument, with
// what was passed — never a raw TypeError from deep inside (issue: reliability).
import { describe, expect, it } from 'vitest';
import {
  cat,
  functional as F,
  grad,
  io,
  manualSeed,
  matmul,
  models,
  nn,
  noGrad,
  ode,
  optim,
  randn,
  scope,
  setDetectAnomaly,
  setGcThreshold,
  stack,
  tensor,
  vjp,
} from '../index.js';

const x = randn([2, 3]);
const cpuX = randn([2, 3], { device: 'cpu' });
const param = () => randn([2], { requiresGrad: true });
const disposed = () => {
  const t = randn([2]);
  t.dispose();
  return t;
};
const tiny = () =>
  new models.LlamaForCausalLM({
    vocab_size: 10,
    hidden_size: 8,
    intermediate_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
  });
const bad = <T>(v: unknown) => v as T;

/** [what, call, the message must contain this]. */
const cases: [string, () => unknown, string][] = [
  // autograd and scopes
  [
    'vjp: cotangent as an array',
    () => vjp((a) => a.sum(0), [x], bad([x.sum(0)])),
    'vjp: cotangent must be a Tensor, got an array of 1',
  ],
  [
    'vjp: inputs not an array',
    () => vjp((a) => a.sum(), bad(x), tensor(1)),
    'vjp: inputs must be an array of tensors, got a tensor',
  ],
  ['vjp: f not a function', () => vjp(bad('f'), [x], tensor(1)), "vjp: f must be a function, got the string 'f'"],
  [
    'vjp: params not tensors',
    () => vjp((a) => a.sum(), [x], tensor(1), { params: bad([1]) }),
    'vjp: opts.params[0] must be a Tensor, got number 1',
  ],
  [
    'grad: a number among inputs',
    () => grad((a) => a.sum(), [bad(3)]),
    'grad: inputs[0] must be a Tensor, got number 3',
  ],
  [
    'grad: f returns a number',
    () => grad(() => bad(3), [x]),
    'grad: the value f returned must be a Tensor, got number 3',
  ],
  ['noGrad: not a function', () => noGrad(bad(5)), 'noGrad: fn must be a function, got number 5'],
  ['scope: not a function', () => scope(bad('x')), 'scope: fn must be a function (sync or async), got string'],
  [
    'setDetectAnomaly: a string',
    () => setDetectAnomaly(bad('on')),
    'setDetectAnomaly: on must be true or false, got string',
  ],
  [
    'setGcThreshold: a string',
    () => setGcThreshold(bad('1GB')),
    'setGcThreshold(bytes): bytes must be a number ≥ 0 (0 turns it off), got 1GB',
  ],
  // tensor ops
  ['add: a string', () => x.add(bad('1')), "add: other must be a Tensor or a number, got the string '1'"],
  [
    'add: an array',
    () => x.add(bad([1, 2, 3])),
    'add: other must be a Tensor or a number, got an array of 3; wrap arrays with tensor(...)',
  ],
  ['mul: undefined', () => x.mul(bad(undefined)), 'mul: other must be a Tensor or a number, got undefined'],
  [
    'add: a disposed tensor',
    () => randn([2]).add(disposed()),
    'add: tensor [2] (float32, webgpu) was already disposed',
  ],
  [
    'add: another device',
    () => x.add(cpuX),
    "add: tensors are on different devices ([2, 3] on webgpu, [2, 3] on cpu); move them with .to('webgpu') first",
  ],
  [
    'sum: axis as a string',
    () => x.sum(bad('1')),
    "sum: axis must be an integer or an array of integers, got the string '1'",
  ],
  ['sum: axis out of range', () => x.sum(5), 'sum: axis 5 is out of range for a tensor of rank 2'],
  [
    'reshape: shape as a string',
    () => x.reshape(bad('6')),
    "reshape: shape must be an array of integer sizes, got the string '6'",
  ],
  ['reshape: wrong size', () => x.reshape([4]), 'reshape: cannot reshape [2, 3] (6 elements) into [4]'],
  ['transpose: NaN axis', () => x.transpose(NaN, 1), 'transpose: axis NaN is out of range for a tensor of rank 2'],
  [
    'matmul: an array operand',
    () => x.matmul(bad([[1], [2], [3]])),
    'matmul: other must be a Tensor, got an array of 3',
  ],
  ['matmul: a number operand', () => matmul(x, bad(3)), 'matmul: other must be a Tensor, got number 3'],
  ['matmul: inner dims', () => x.matmul(randn([4, 2])), 'matmul: inner dimensions differ'],
  ['cat: not an array', () => cat(bad(x)), 'cat: tensors must be an array of tensors, got a tensor'],
  ['cat: a number inside', () => cat([x, bad(1)]), 'cat: tensors[1] must be a Tensor, got number 1'],
  ['cat: empty', () => cat([]), 'cat: tensors must be a non-empty array of tensors, got an array of 0'],
  ['stack: empty', () => stack([]), 'stack: needs at least one tensor'],
  [
    'item: not one element',
    () => x.item(),
    'item: only one-element tensors can be converted to a number, got shape [2, 3]',
  ],
  ['data: disposed', () => disposed().data(), 'data: tensor [2] (float32, webgpu) was already disposed'],
  // creation
  ['tensor: a string', () => tensor(bad('abc')), 'tensor: ragged or non-numeric data at depth 0'],
  [
    'tensor: ragged',
    () => tensor(bad([[1, 2], [3]])),
    'tensor: ragged nested array: expected length 2 at depth 1, got 1',
  ],
  [
    'tensor: unknown dtype',
    () => tensor([1], { dtype: bad('float8') }),
    "tensor: unknown dtype 'float8'; use one of float16, float32, float64, int32",
  ],
  [
    'tensor: unknown device',
    () => tensor([1], { device: bad('gpu') }),
    "tensor: unknown device 'gpu'; use 'webgpu' or 'cpu'",
  ],
  ['tensor: float64 on webgpu', () => tensor([1], { dtype: 'float64' }), 'float64'],
  [
    'randn: shape as a string',
    () => randn(bad('3')),
    "randn: shape must be an array of sizes, e.g. [2, 3], got the string '3'",
  ],
  ['randn: negative size', () => randn([-1, 2]), 'randn: invalid shape [-1, 2]: sizes must be non-negative integers'],
  ['manualSeed: a string', () => manualSeed(bad('a')), "manualSeed: seed must be an integer, got the string 'a'"],
  // transformer functions
  [
    'layerNorm: weight as an array',
    () => F.layerNorm(x, bad([1, 1, 1])),
    'layerNorm: weight must be a Tensor, got an array of 3',
  ],
  ['layerNorm: wrong weight shape', () => F.layerNorm(x, randn([2])), 'layerNorm: weight must have shape [3]'],
  [
    'crossEntropy: float targets',
    () => F.crossEntropy(x, tensor([0, 1])),
    "crossEntropy: targets must be int32 class indices, got float32; use .astype('int32')",
  ],
  [
    'crossEntropy: targets as an array',
    () => F.crossEntropy(x, bad([0, 1])),
    'crossEntropy: targets must be a Tensor, got an array of 2',
  ],
  // nn
  [
    'Linear: size as a string',
    () => new nn.Linear(bad('4'), 2),
    "Linear: inFeatures must be an integer ≥ 0, got the string '4'; pass a number, not a string",
  ],
  [
    'Linear: no arguments',
    () => new (nn.Linear as unknown as new () => unknown)(),
    'Linear: inFeatures must be an integer ≥ 0, got undefined',
  ],
  [
    'Linear: called on an array',
    () => new nn.Linear(3, 2).call(bad([1, 2, 3])),
    'Linear: input must be a Tensor, got an array of 3',
  ],
  [
    'Embedding: negative size',
    () => new nn.Embedding(-3, 2),
    'Embedding: numEmbeddings must be an integer ≥ 1, got number -3',
  ],
  [
    'loadStateDict: not an object',
    () => new nn.Linear(2, 2).loadStateDict(bad(3)),
    'Linear.loadStateDict: stateDict must be an object, got number 3',
  ],
  [
    'loadStateDict: wrong shape',
    () => new nn.Linear(2, 2).loadStateDict({ weight: randn([3, 2]), bias: randn([2]) }),
    'weight',
  ],
  // optimizers and schedules
  [
    'AdamW: params is a tensor',
    () => new optim.AdamW(bad(x), { lr: 1e-3 }),
    'AdamW: params must be an array of tensors (e.g. model.parameters())',
  ],
  [
    'AdamW: lr as a string',
    () => new optim.AdamW([param()], { lr: bad('0.1') }),
    "AdamW: lr must be a finite number ≥ 0, got the string '0.1'",
  ],
  [
    'AdamW: negative lr',
    () => new optim.AdamW([param()], { lr: -1 }),
    'AdamW: lr must be a finite number ≥ 0, got number -1',
  ],
  [
    'clipGradNorm: maxNorm as a string',
    () => optim.clipGradNorm([param()], bad('a')),
    'clipGradNorm: maxNorm must be >= 0, got a',
  ],
  [
    'cosineWithWarmup: no totalSteps',
    () => optim.lr.cosineWithWarmup(new optim.SGD([param()], { lr: 1 }), bad({ warmupSteps: 1 })),
    'lr.cosineWithWarmup: totalSteps must be an integer >= 1, got undefined',
  ],
  // ode
  [
    'odeint: f not a function',
    () => ode.odeint(bad(3), tensor([1]), [0, 1]),
    'odeint: f must be a function, got number 3',
  ],
  ['odeint: y0 as an array', () => ode.odeint((_t, y) => y, bad([1]), [0, 1]), 'odeint: y0 must be a Tensor'],
  [
    'odeint: t as a string',
    () => ode.odeint((_t, y) => y, tensor([1]), bad('0,1')),
    'odeint: t must be a number[] or a 1-D tensor',
  ],
  [
    'odeint: method typo',
    () => ode.odeint((_t, y) => y, tensor([1]), [0, 1], { method: bad('rk45') }),
    "odeint: unknown method 'rk45'; use one of dopri5, euler, midpoint, rk4",
  ],
  [
    'odeintAdjoint: f not a function',
    () => ode.odeintAdjoint(bad(null), tensor([1]), [0, 1]),
    'odeintAdjoint: f must be a function, got null',
  ],
  [
    'odeintAdjoint: params a tensor',
    () => ode.odeintAdjoint((_t, y) => y, tensor([1]), [0, 1], { params: bad(tensor([1])) }),
    'odeintAdjoint: params must be a list of tensors or an object with parameters()',
  ],
  // io
  [
    'saveSafetensors: path a number',
    () => io.saveSafetensors(bad(3), { a: x }),
    'saveSafetensors: path must be a string, got number 3',
  ],
  [
    'saveSafetensors: tensors an array',
    () => io.saveSafetensors('test/.tmp/bad.safetensors', bad([x])),
    'saveSafetensors: tensors must be an object, got an array of 1',
  ],
  [
    'saveSafetensors: a non-tensor value',
    () => io.saveSafetensors('test/.tmp/bad.safetensors', bad({ w: [1, 2] })),
    "saveSafetensors: tensors['w'] must be a Tensor, got an array of 2",
  ],
  [
    'loadSafetensors: missing file',
    () => io.loadSafetensors('test/.tmp/nope.safetensors'),
    'cannot read the file (ENOENT',
  ],
  [
    'saveCheckpoint: dir a number',
    () => io.saveCheckpoint(bad(1), {}),
    'saveCheckpoint: dir must be a string, got number 1',
  ],
  // tokenizers and models
  [
    'CharTokenizer.encode: a number',
    () => new models.CharTokenizer().encode(bad(3)),
    'CharTokenizer.encode: text must be a string, got number 3',
  ],
  [
    'CharTokenizer.decode: out of vocabulary',
    () => new models.CharTokenizer().decode([500]),
    'CharTokenizer.decode: id 500 is outside the vocabulary [0, 96)',
  ],
  [
    'LlamaForCausalLM.forward: ids an array',
    () => tiny().forward(bad([[1, 2]])),
    'LlamaForCausalLM.forward: ids must be a Tensor, got an array of 1',
  ],
  [
    'LlamaForCausalLM.forward: float ids',
    () => tiny().forward(tensor([[1, 2]])),
    'ids must be int32 [batch, seq], got float32 [1, 2]',
  ],
  [
    'generate: a string prompt',
    () => tiny().generate(bad('ab')),
    "generate: ids must be a Tensor [batch, seq], an array of token ids or an array of rows, got the string 'ab'; encode text with a tokenizer first",
  ],
  [
    'generate: bad maxNewTokens',
    () => tiny().generate([1, 2], { maxNewTokens: -1 }),
    'generate: maxNewTokens must be a non-negative integer, got -1',
  ],
];

describe(`bad input: ${cases.length} cases, each naming the function and the argument`, () => {
  it.each(cases)('%s', async (_what, call, message) => {
    let error: unknown = null;
    try {
      await call();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(TypeError); // a raw TypeError means nothing checked the argument
    expect((error as Error).message).toContain(message);
  });
});
