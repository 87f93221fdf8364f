// Half-precision models: module.half() / float() / to({ dtype }) converting in place, LLaMA and GPT-NeoX
// running in float16 on webgpu (CLEX's ODE kept float32), a float16 KV cache in generation, and Hugging
// Face folders loaded as float16 (F16 bits kept, F32/F64/BF16 converted, overflow named) and saved from
// float16 models.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { io, manualSeed, models, nn, noGrad, scope, tensor, type DeviceName, type Tensor } from '../index.js';
import { roundFloat16 } from '../core/dtype.js';
import { ids, tinyModel, values, type Kind } from './models-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dawngrad-f16-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(root, `m${dirs++}`);

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/** A float32 module with a kept (float32) submodule, a frozen parameter, a float and an int32 buffer. */
class Mixed extends nn.Module {
  readonly lin: nn.Linear;
  readonly kept: nn.Linear;
  readonly scale: Tensor;
  readonly steps: Tensor;
  constructor(device: DeviceName) {
    super();
    const o = { device, dtype: 'float32' as const };
    this.lin = this.module('lin', new nn.Linear(3, 2, o));
    this.kept = this.module('kept', new nn.Linear(2, 2, o));
    this.kept.keepsDtype = true;
    this.scale = this.buffer('scale', tensor([0.1, 3.3], o));
    this.steps = this.buffer('steps', tensor([7], { device, dtype: 'int32' }));
  }
  forward(x: Tensor): Tensor {
    return this.kept.call(this.lin.call(x).mul(this.scale).float());
  }
}

describe.each(['cpu', 'webgpu'] as const)('module.half() / float() / to({ dtype }) on %s', (device) => {
  it('converts floating parameters, their grads and floating buffers in place; int32 and kept modules stay', async () => {
    manualSeed(2);
    const m = new Mixed(device);
    const [w, b] = [m.lin.weight, m.lin.bias as Tensor];
    b.requiresGrad = false;
    w.grad = tensor([1, 2, 3, 4, 5, 6.0001], { device, shape: [2, 3] });
    const before = await w.data();
    expect(m.half()).toBe(m);
    expect([m.lin.weight, m.lin.bias]).toEqual([w, b]);
    expect(m.parameters()[0]).toBe(w);
    expect([w.dtype, b.dtype, m.scale.dtype, w.grad?.dtype]).toEqual(['float16', 'float16', 'float16', 'float16']);
    expect([w.requiresGrad, b.requiresGrad]).toEqual([true, false]);
    expect([m.steps.dtype, m.kept.weight.dtype]).toEqual(['int32', 'float32']);
    expect(Array.from(await w.data())).toEqual(Array.from(before, roundFloat16));
    expect(Array.from(await m.scale.data())).toEqual([0.1, 3.3].map(roundFloat16));
    // A float16 forward and backward reach float16 grads of the converted parameters.
    m.zeroGrad();
    const loss = m.forward(tensor([[1, -2, 0.5]], { device, dtype: 'float16' })).sum();
    loss.backward();
    expect([w.grad?.dtype, m.kept.weight.grad?.dtype]).toEqual(['float16', 'float32']);
    expect(m.float()).toBe(m);
    expect([w.dtype, m.scale.dtype, m.steps.dtype]).toEqual(['float32', 'float32', 'int32']);
    expect(m.to({ dtype: 'float16', device })).toBe(m);
    expect(w.dtype).toBe('float16');
    loss.dispose();
    m.dispose();
  });

  it('rejects a non-float dtype and unknown options', () => {
    const m = new Mixed(device);
    expect(() => m.to({ dtype: 'int32' })).toThrow(/Mixed\.to: dtype must be a float dtype .*got 'int32'/);
    expect(() => m.to({ dtype: 'half' as never })).toThrow(/unknown dtype 'half'/);
    expect(() => m.to({ dtyp: 'float16' } as never)).toThrow(/unknown option 'dtyp'; module\.to\(\) takes/);
    m.dispose();
  });
});

/** Logits of ids on a model in eval mode, without a graph. */
async function logitsOf(m: models.CausalLM, x: Tensor): Promise<{ dtype: string; values: Float32Array }> {
  return scope(async () => {
    const { logits } = await noGrad(() => m.eval().forward(x));
    return { dtype: logits.dtype, values: Float32Array.from(await logits.data()) };
  });
}

const PROMPT = [
  [1, 5, 2, 9, 4, 0, 7, 3, 3, 6, 2, 8],
  [2, 2, 8, 1, 0, 10, 4, 5, 9, 1, 7, 7],
];

describe('float16 decoders on webgpu', () => {
  const kinds: [Kind, models.RopeScaling | null][] = [
    ['llama', null],
    ['neox', null],
    ['llama', { type: 'clex', max_factor: 4 }],
    ['neox', { type: 'clex', max_factor: 4 }],
  ];
  for (const [kind, scaling] of kinds) {
    it(`${kind} ${scaling?.type ?? 'rope'}: half() gives float16 logits close to float32 (past L0: t = 2)`, async () => {
      const ref = tinyModel(kind, scaling as never, { device: 'webgpu' });
      const half = tinyModel(kind, scaling as never, { device: 'webgpu' }).half();
      expect(half.dtype).toBe('float16');
      if (scaling) expect(half.clex?.parameters().map((p) => p.dtype)).toEqual(['float32', 'float32']);
      const x = ids(PROMPT, 'webgpu');
      const [a, b] = [await logitsOf(ref, x), await logitsOf(half, x)];
      expect([a.dtype, b.dtype]).toEqual(['float32', 'float16']);
      const diff = maxAbsDiff(a.values, b.values);
      const top = maxAbsDiff(a.values, new Float32Array(a.values.length));
      // Each layer adds about 2^-11 relative rounding; two layers of width 16 stay well under 1%.
      expect(diff).toBeLessThan(1e-2 * top);
      expect(diff).toBeGreaterThan(0);
      x.dispose();
      ref.dispose();
      half.dispose();
    });
  }

  it('a model built as float16 keeps its CLEX ODE in float32', () => {
    manualSeed(1);
    const m = new models.LlamaForCausalLM(
      {
        vocab_size: 11,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        max_position_embeddings: 8,
        rope_scaling: { type: 'clex', max_factor: 4 },
      },
      { device: 'webgpu', dtype: 'float16' },
    );
    expect(m.dtype).toBe('float16');
    expect(m.model.embed_tokens.weight.dtype).toBe('float16');
    expect(m.clex?.parameters().map((p) => p.dtype)).toEqual(['float32', 'float32']);
    m.float();
    expect(m.dtype).toBe('float32');
    m.dispose();
  });

  it('generate keeps a float16 KV cache and picks the float32 model’s greedy tokens', async () => {
    const ref = tinyModel('llama', null, { device: 'webgpu', seed: 4 });
    const half = tinyModel('llama', null, { device: 'webgpu', seed: 4 }).half();
    const cache = new models.DecodeState(half.numLayers);
    await scope(async () => {
      await noGrad(() => half.forward(ids([PROMPT[0].slice(0, 5)], 'webgpu'), { cache }));
      await noGrad(() => half.forward(ids([[3]], 'webgpu'), { cache }));
    });
    for (let layer = 0; layer < half.numLayers; layer++) {
      const kv = cache.cached(layer);
      expect([kv?.k.dtype, kv?.v.dtype, kv?.k.shape[2]]).toEqual(['float16', 'float16', 6]);
    }
    cache.dispose();
    // Greedy decoding in float16 picks, at every step, the float32 model's best token or one whose
    // float32 logit ties it within float16's rounding (a tiny random model has near ties).
    const prompt = PROMPT.map((r) => r.slice(0, 4));
    const [a, b] = [await ref.generate(prompt, { maxNewTokens: 6 }), await half.generate(prompt, { maxNewTokens: 6 })];
    const full = await logitsOf(ref, ids(b, 'webgpu'));
    const V = ref.vocabSize;
    let agreed = 0;
    b.forEach((row, r) => {
      for (let t = 4; t < row.length; t++) {
        const at = (t - 1 + r * row.length) * V;
        const step = full.values.subarray(at, at + V);
        expect(Math.max(...step) - step[row[t]]).toBeLessThan(2e-2);
        if (row[t] === a[r][t] && b[r].slice(0, t).join() === a[r].slice(0, t).join()) agreed++;
      }
    });
    expect(agreed).toBeGreaterThan(0);
    ref.dispose();
    half.dispose();
  });
});

/** The dtypes of a folder's model.safetensors tensors. */
async function fileDTypes(dir: string): Promise<Set<string>> {
  const header = await io.readSafetensorsHeader(join(dir, 'model.safetensors'));
  return new Set(Object.values(header.tensors).map((t) => t.dtype));
}

describe('Hugging Face folders in float16', () => {
  it('a float16 model saves as F16 with torch_dtype float16, and loads back as float16 bit for bit', async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4 }, { device: 'webgpu', seed: 5 }).half();
    const dir = freshDir();
    await m.savePretrained(dir);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('float16');
    expect(await fileDTypes(dir)).toEqual(new Set(['F16']));
    for (const device of ['webgpu', 'cpu'] as const) {
      const loaded = await models.fromPretrained(dir, { device, dtype: 'float16' });
      expect(loaded.dtype).toBe('float16');
      const again = freshDir();
      await loaded.savePretrained(again);
      expect(readFileSync(join(again, 'model.safetensors'))).toEqual(readFileSync(join(dir, 'model.safetensors')));
      loaded.dispose();
    }
    m.dispose();
  });

  it('F32 weights load as float16 rounded once; CLEX’s ODE weights stay float32 and exact', async () => {
    const m = tinyModel('neox', { type: 'clex', max_factor: 4 }, { device: 'cpu', seed: 6 });
    const dir = freshDir();
    await m.savePretrained(dir, { dtype: 'float32' });
    const loaded = await models.fromPretrained(dir, { device: 'cpu', dtype: 'float16' });
    const want = m.stateDict();
    for (const [name, t] of Object.entries(loaded.stateDict())) {
      const ode = /clex_layer/.test(name);
      expect([name, t.dtype]).toEqual([name, ode ? 'float32' : 'float16']);
      const source = Float32Array.from(await want[name].data());
      expect(await values(t)).toEqual(Array.from(source, (v) => (ode ? v : roundFloat16(v))));
    }
    m.dispose();
    loaded.dispose();
  });

  it('names every tensor, in every shard, whose values overflow float16, and says to load as float32', async () => {
    const m = tinyModel('llama', null, { device: 'cpu', seed: 7 });
    const sd = m.stateDict();
    nn.init.constant(sd['model.embed_tokens.weight'], 1e5);
    nn.init.constant(sd['lm_head.weight'], -7e4);
    nn.init.constant(sd['model.norm.weight'], 6e4); // within float16's range (and stored exactly in BF16)
    const dir = freshDir();
    await m.savePretrained(dir, { dtype: 'bfloat16', maxShardSize: 400 });
    const names = Object.keys(JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map);
    expect(names.length).toBeGreaterThan(0);
    const err = await models.fromPretrained(dir, { device: 'cpu', dtype: 'float16' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /fromPretrained: cannot load .* as float16: these tensors hold values beyond float16's range \(\|x\| > 65504\).*: (model\.embed_tokens\.weight \(BF16\), lm_head\.weight \(BF16\)|lm_head\.weight \(BF16\), model\.embed_tokens\.weight \(BF16\)); load the model with dtype 'float32' instead/,
    );
    expect((err as Error).message).not.toMatch(/model\.norm\.weight/);
    const wide = await models.fromPretrained(dir, { device: 'cpu' });
    expect(wide.dtype).toBe('float32');
    wide.dispose();
    m.dispose();
  });
});
