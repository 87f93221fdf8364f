// LLaMA's joint projections (q/k/v and gate/up each as one matmul against the concatenated weights,
// outputs taken as views) agree with separate projections — logits and every parameter's gradient by
// HF name, with GQA, head_dim ≠ hidden / heads and biases — and the residual stream leaves no
// standalone residual add in LLaMA or GPT-NeoX: each layer's last add runs inside the next norm's kernel.
import { describe, expect, it } from 'vitest';
import { kernelCounts } from './dispatch-helpers.js';
import { manualSeed, models, noGrad, optim, scope, type DeviceName } from '../index.js';
import { ids, values } from './models-helpers.js';

function setJoint(m: models.LlamaForCausalLM, mode: models.JointProjection): void {
  for (const layer of m.model.layers) {
    layer.self_attn.jointProjection = mode;
    layer.mlp.jointProjection = mode;
  }
}

const CONFIGS: [string, models.LlamaConfigInput][] = [
  ['GQA (4 query heads, 2 kv heads)', { hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2 }],
  [
    'head_dim 6 ≠ hidden / heads, attention and MLP biases',
    {
      hidden_size: 16,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      head_dim: 6,
      attention_bias: true,
      mlp_bias: true,
    },
  ],
];

function llama(
  config: models.LlamaConfigInput,
  device: DeviceName,
  mode: models.JointProjection,
): models.LlamaForCausalLM {
  manualSeed(7);
  const m = new models.LlamaForCausalLM(
    {
      vocab_size: 11,
      num_hidden_layers: 2,
      intermediate_size: 20,
      max_position_embeddings: 8,
      initializer_range: 0.3,
      ...config,
    },
    { device, dtype: device === 'cpu' ? 'float64' : 'float32' },
  );
  setJoint(m, mode);
  // Nonzero biases, so a bias sliced to the wrong projection would show.
  noGrad(() => {
    for (const [name, p] of m.namedParameters()) if (name.endsWith('.bias')) p.copy_(p.fullLike(0).add(0.1));
  });
  return m;
}

/** Logits and every parameter's gradient (by HF name) of one loss.backward. */
async function logitsAndGrads(
  m: models.LlamaForCausalLM,
  device: DeviceName,
): Promise<{ logits: number[]; grads: Map<string, number[]> }> {
  const batch = ids(
    [
      [1, 2, 3, 4, 5, 6, 7, 8],
      [8, 7, 6, 5, 4, 3, 2, 1],
    ],
    device,
  );
  m.zeroGrad();
  const logits = await scope(async () => {
    const out = await m.forward(batch, { labels: batch });
    await out.loss!.backwardAsync();
    return values(out.logits);
  });
  const grads = new Map<string, number[]>();
  for (const [name, p] of m.namedParameters()) grads.set(name, await values(p.grad!));
  return { logits, grads };
}

describe('joint q/k/v and gate/up projections', () => {
  for (const device of ['cpu', 'webgpu'] as const) {
    for (const [name, config] of CONFIGS) {
      it(`give the logits and per-parameter gradients of separate projections (${name}; ${device})`, async () => {
        const tol = device === 'cpu' ? 1e-12 : 2e-5;
        const joint = llama(config, device, 'always');
        const separate = llama(config, device, 'never');
        const a = await logitsAndGrads(joint, device);
        const b = await logitsAndGrads(separate, device);
        b.logits.forEach((v, i) =>
          expect(Math.abs(a.logits[i] - v), `logit ${i}`).toBeLessThanOrEqual(tol * (1 + Math.abs(v))),
        );
        expect([...a.grads.keys()]).toEqual([...b.grads.keys()]);
        for (const [key, want] of b.grads) {
          const got = a.grads.get(key)!;
          const scale = Math.max(1, ...want.map(Math.abs));
          want.forEach((v, i) => expect(Math.abs(got[i] - v), `${key}[${i}]`).toBeLessThanOrEqual(tol * scale));
        }
        joint.dispose();
        separate.dispose();
      });
    }
  }

  it('default: q/k/v and gate/up joined in training', () => {
    const m = new models.LlamaForCausalLM({
      vocab_size: 11,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 20,
    });
    const [layer] = [...m.model.layers];
    expect(layer.self_attn.jointProjection).toBe('training');
    expect(layer.mlp.jointProjection).toBe('training');
    m.dispose();
  });

  it('keep HF names, shapes and state-dict keys', () => {
    const m = llama(CONFIGS[1][1], 'cpu', 'always');
    const shapes = Object.fromEntries(Object.entries(m.stateDict()).map(([k, t]) => [k, t.shape]));
    expect(shapes).toMatchObject({
      'model.layers.0.self_attn.q_proj.weight': [12, 16],
      'model.layers.0.self_attn.q_proj.bias': [12],
      'model.layers.0.self_attn.k_proj.weight': [6, 16],
      'model.layers.0.self_attn.v_proj.bias': [6],
      'model.layers.0.mlp.gate_proj.weight': [20, 16],
      'model.layers.0.mlp.up_proj.bias': [20],
    });
    m.dispose();
  });
});

describe('dispatches of a LLaMA training step (webgpu)', () => {
  const config = CONFIGS[0][1];
  const L = 2;
  const step = (mode: models.JointProjection) =>
    kernelCounts(async () => {
      const m = llama(config, 'webgpu', mode);
      await logitsAndGrads(m, 'webgpu');
      m.dispose();
    });
  const forward = (mode: models.JointProjection, grad: boolean) =>
    kernelCounts(async () => {
      const m = llama(config, 'webgpu', mode);
      const batch = ids([[1, 2, 3, 4, 5, 6, 7, 8]], 'webgpu');
      await scope(async () => {
        await values((await (grad ? m.forward(batch) : noGrad(() => m.forward(batch)))).logits);
      });
      m.dispose();
    });
  const total = (c: Map<string, number>) => [...c.values()].reduce((s, n) => s + n, 0);

  it('joint projections: 12 matmuls per layer instead of 21 (forward 7 → 4, backward 14 → 8)', async () => {
    const joint = await step('always');
    const separate = await step('never');
    // Per layer: q/k/v forward 3 → 1, dX 3 → 1, dW 3 → 1; gate/up 2 → 1 each way.
    expect(separate.get('matmul')! - joint.get('matmul')!).toBe(9 * L);
  });

  it('joined projections: a training step with clipping makes 6 fewer dispatches per layer for q/k/v, 2 for gate/up', async () => {
    const clippedStep = (attn: models.JointProjection, mlp: models.JointProjection) =>
      kernelCounts(async () => {
        const m = llama(config, 'webgpu', 'never');
        for (const layer of m.model.layers) {
          layer.self_attn.jointProjection = attn;
          layer.mlp.jointProjection = mlp;
        }
        await logitsAndGrads(m, 'webgpu');
        await optim.clipGradNorm(m.parameters(), 1).item();
        m.dispose();
      });
    const separate = await clippedStep('never', 'never');
    const qkv = await clippedStep('always', 'never');
    const diff = (k: string) => (qkv.get(k) ?? 0) - (separate.get(k) ?? 0);
    // Per layer: 6 matmuls fewer; no adds summing dX (one dX matmul) nor the parts' gradients (the split's
    // backward is one cat); one cat of the weights and one in the split's backward; no copies either way.
    expect(diff('matmul')).toBe(-6 * L);
    expect(diff('add')).toBe(-2 * L);
    expect(diff('cat')).toBe(2 * L);
    expect(diff('copy')).toBe(0);
    // Clipping scales the weights' slices of one joint gradient in place: the same clipping dispatches.
    expect(diff('optim.clipGradNorm')).toBe(0);
    expect(total(separate) - total(qkv)).toBe(6 * L);
    // gate/up: 3 matmuls and 1 add fewer, the same two cats.
    const gateUp = await clippedStep('never', 'always');
    expect(total(separate) - total(gateUp)).toBe(2 * L);
  });

  it("'training' joins only when a backward may follow (grad recording on)", async () => {
    expect(total(await forward('training', false))).toBe(total(await forward('never', false)));
    expect(total(await forward('training', true))).toBe(total(await forward('always', true)));
    expect(total(await forward('always', true))).not.toBe(total(await forward('never', true)));
  });

  it('no standalone residual add: each runs inside the next norm kernel (addRmsNorm)', async () => {
    // Without biases the forward's only adds are the 2 residual adds per layer: the post-attention one
    // into post_attention_layernorm, the layer's last one into the next input_layernorm or model.norm.
    const counts = await forward('never', true);
    expect(counts.get('add') ?? 0).toBe(0);
    expect(counts.get('addRmsNorm')).toBe(2 * L);
    expect(counts.get('rmsNorm')).toBe(1); // the first layer's input norm: nothing pending yet
  });

  it('GPT-NeoX: the residual add that ends a layer runs inside the next layer norm (addLayerNorm), parallel or sequential', async () => {
    for (const parallel of [true, false]) {
      const counts = await kernelCounts(async () => {
        manualSeed(3);
        const m = new models.GPTNeoXForCausalLM(
          {
            vocab_size: 11,
            hidden_size: 16,
            num_hidden_layers: L,
            num_attention_heads: 2,
            intermediate_size: 24,
            rotary_pct: 0.5,
            max_position_embeddings: 8,
            use_parallel_residual: parallel,
          },
          { device: 'webgpu' },
        );
        await scope(async () => {
          await values((await m.forward(ids([[1, 2, 3, 4, 5, 6, 7, 8]], 'webgpu'))).logits);
        });
        m.dispose();
      });
      // Layers 1..L-1's input norms and the final norm add the previous layer's pending output; the
      // sequential layer's post-attention norm adds its attention output too.
      expect(counts.get('addLayerNorm'), `parallel ${parallel}`).toBe(parallel ? L : 2 * L);
      // Layer 0's input norm, and in the parallel layer ln2(x) of a stream already summed by ln1.
      expect(counts.get('layerNorm'), `parallel ${parallel}`).toBe(parallel ? 1 + L : 1);
    }
  });
});
