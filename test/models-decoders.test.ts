// LLaMA and GPT-NeoX: configs, HF parameter names and layouts, causality, KV-cache decoding against
// full forwards for every RoPE scaling type, and generation.
import { mkdir, rm } from 'node:fs/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { functional as F, io, memory, models, nn, noGrad, OpError, scope, tensor, type Tensor } from '../index.js';
import { copyWeights, ids, SCALING_OF, SCALINGS, tinyModel, values, type Kind } from './models-helpers.js';

describe('configs', () => {
  it('fill HF defaults', () => {
    const c = new models.LlamaConfig();
    expect([c.num_key_value_heads, c.head_dim, c.rope_theta, c.rms_norm_eps, c.rope_scaling]).toEqual([
      32,
      128,
      10000,
      1e-6,
      null,
    ]);
    const x = new models.LlamaConfig({ hidden_size: 64, num_attention_heads: 4, rope_scaling: { type: 'clex' } });
    expect(x.rope_scaling).toMatchObject({ type: 'clex', max_factor: 16, param_factor: 1, act: 'tanh', time_dt: 0.01 });
    const n = new models.GPTNeoXConfig({ hidden_size: 64, num_attention_heads: 4 });
    expect([n.intermediate_size, n.rotary_ndims, n.use_parallel_residual, n.layer_norm_eps]).toEqual([
      256,
      4,
      true,
      1e-5,
    ]);
  });

  it.each([
    [() => new models.LlamaConfig({ hidden_size: 30, num_attention_heads: 4 }), /divisible by num_attention_heads/],
    [
      () => new models.LlamaConfig({ num_attention_heads: 4, hidden_size: 32, num_key_value_heads: 3 }),
      /multiple of num_key_value_heads/,
    ],
    [() => new models.LlamaConfig({ rope_scaling: { type: 'foo' as never } }), /rope_scaling.type must be one of/],
    [
      () => new models.LlamaConfig({ rope_scaling: { type: 'clex', act: 'relu' as never } }),
      /act must be 'tanh' or 'silu'/,
    ],
    [
      () => new models.LlamaConfig({ rope_scaling: { type: 'clex', max_factor: 2.5 } }),
      /max_factor must be a positive integer/,
    ],
    [() => new models.LlamaConfig({ rope_scaling: { type: 'linear', factor: 0.5 } }), /factor must be ≥ 1/],
    [
      () => new models.GPTNeoXConfig({ hidden_size: 48, num_attention_heads: 4, rotary_pct: 0.25 }),
      /rotary_ndims .* must be an even number/,
    ],
    [() => new models.LlamaConfig({ vocab_size: 0 }), /vocab_size must be a positive integer/],
  ])('rejects inconsistent values clearly (%#)', (make, message) => {
    expect(make).toThrow(OpError);
    expect(make).toThrow(message);
  });
});

describe('HF parameter names and layouts', () => {
  it('LLaMA uses HF names and shapes (GQA k/v), and omits lm_head when tied', () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4 }, { gqa: true });
    const shapes = Object.fromEntries(m.namedParameters().map(([k, p]) => [k, p.shape]));
    expect(shapes).toMatchObject({
      'model.embed_tokens.weight': [11, 16],
      'model.layers.0.self_attn.q_proj.weight': [16, 16],
      'model.layers.0.self_attn.k_proj.weight': [8, 16],
      'model.layers.0.self_attn.v_proj.weight': [8, 16],
      'model.layers.0.self_attn.o_proj.weight': [16, 16],
      'model.layers.1.mlp.gate_proj.weight': [24, 16],
      'model.layers.1.mlp.up_proj.weight': [24, 16],
      'model.layers.1.mlp.down_proj.weight': [16, 24],
      'model.layers.1.input_layernorm.weight': [16],
      'model.layers.1.post_attention_layernorm.weight': [16],
      'model.norm.weight': [16],
      'model.clex_layer.proj_func.ode_up_proj': [4, 8],
      'model.clex_layer.proj_func.ode_down_proj': [8, 4],
      'lm_head.weight': [11, 16],
    });
    expect(Object.keys(shapes)).toHaveLength(1 + 2 * 9 + 1 + 2 + 1);
    const tied = new models.LlamaForCausalLM(
      {
        vocab_size: 11,
        hidden_size: 16,
        intermediate_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        tie_word_embeddings: true,
      },
      { device: 'cpu', dtype: 'float64' },
    );
    expect(Object.keys(tied.stateDict())).not.toContain('lm_head.weight');
  });

  it("HF's init by declared role: norm gains 1, biases 0, weights and embeddings N(0, initializer_range), CLEX's own", async () => {
    const m = tinyModel('neox', { type: 'clex', max_factor: 4 });
    const clex = new Set(m.clex!.parameters());
    for (const [name, p] of m.namedParameters()) {
      if (clex.has(p)) continue;
      const v = await values(p);
      if (/layernorm|layer_norm/.test(name) && name.endsWith('.weight'))
        expect(
          v.every((x) => x === 1),
          name,
        ).toBe(true);
      else if (name.endsWith('.bias'))
        expect(
          v.every((x) => x === 0),
          name,
        ).toBe(true);
      else expect(Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length), name).toBeGreaterThan(0.1); // std 0.3
    }
    m.dispose();
  });

  it('GPT-NeoX uses HF names and shapes', () => {
    const m = tinyModel('neox', null);
    const shapes = Object.fromEntries(m.namedParameters().map(([k, p]) => [k, p.shape]));
    expect(shapes).toEqual({
      'gpt_neox.embed_in.weight': [11, 16],
      ...Object.fromEntries(
        [0, 1].flatMap((i) => [
          [`gpt_neox.layers.${i}.input_layernorm.weight`, [16]],
          [`gpt_neox.layers.${i}.input_layernorm.bias`, [16]],
          [`gpt_neox.layers.${i}.post_attention_layernorm.weight`, [16]],
          [`gpt_neox.layers.${i}.post_attention_layernorm.bias`, [16]],
          [`gpt_neox.layers.${i}.attention.query_key_value.weight`, [48, 16]],
          [`gpt_neox.layers.${i}.attention.query_key_value.bias`, [48]],
          [`gpt_neox.layers.${i}.attention.dense.weight`, [16, 16]],
          [`gpt_neox.layers.${i}.attention.dense.bias`, [16]],
          [`gpt_neox.layers.${i}.mlp.dense_h_to_4h.weight`, [24, 16]],
          [`gpt_neox.layers.${i}.mlp.dense_h_to_4h.bias`, [24]],
          [`gpt_neox.layers.${i}.mlp.dense_4h_to_h.weight`, [16, 24]],
          [`gpt_neox.layers.${i}.mlp.dense_4h_to_h.bias`, [16]],
        ]),
      ),
      'gpt_neox.final_layer_norm.weight': [16],
      'gpt_neox.final_layer_norm.bias': [16],
      'embed_out.weight': [11, 16],
    });
  });

  it('GPT-NeoX reads query_key_value per head as [heads, 3, head_dim] and rotates only rotary_ndims dims', async () => {
    const m = tinyModel('neox', null) as models.GPTNeoXForCausalLM;
    const attn = m.gpt_neox.layers.at(0).attention;
    const T = 5,
      H = 2,
      D = 8,
      R = 4;
    const x = tensor(
      Float64Array.from({ length: T * 16 }, (_, i) => Math.sin(i * 0.37)),
      { shape: [1, T, 16], dtype: 'float64', device: 'cpu' },
    );
    const rope = await m.rotary.forward({ length: T, device: 'cpu', dtype: 'float64', training: false });
    const got = await values(noGrad(() => attn.forward(x, rope, undefined)));
    // Reference from the definition: rows h·3D + [0, D) are head h's query, then its key, then its value.
    const W = await values(attn.query_key_value.weight),
      bq = await values(attn.query_key_value.bias!);
    const xv = await values(x);
    const proj = (t: number, row: number) =>
      bq[row] + Array.from({ length: 16 }, (_, c) => W[row * 16 + c] * xv[t * 16 + c]).reduce((a, b) => a + b);
    const rot = (vec: number[], t: number) =>
      vec.map((v, j) => {
        if (j >= R) return v;
        const theta = Math.pow(10000, -(2 * (j % (R / 2))) / R) * t;
        const partner = j < R / 2 ? -vec[j + R / 2] : vec[j - R / 2];
        return v * Math.cos(theta) + partner * Math.sin(theta);
      });
    const heads: number[][][] = [];
    for (let h = 0; h < H; h++) {
      const q = (t: number) =>
        rot(
          Array.from({ length: D }, (_, e) => proj(t, h * 3 * D + e)),
          t,
        );
      const k = (t: number) =>
        rot(
          Array.from({ length: D }, (_, e) => proj(t, h * 3 * D + D + e)),
          t,
        );
      const v = (t: number) => Array.from({ length: D }, (_, e) => proj(t, h * 3 * D + 2 * D + e));
      heads.push(
        Array.from({ length: T }, (_, i) => {
          const s = Array.from(
            { length: i + 1 },
            (_, j) => q(i).reduce((a, qe, e) => a + qe * k(j)[e], 0) / Math.sqrt(D),
          );
          const mx = Math.max(...s);
          const p = s.map((z) => Math.exp(z - mx));
          const z = p.reduce((a, b) => a + b);
          return Array.from({ length: D }, (_, e) => p.reduce((a, pj, j) => a + (pj / z) * v(j)[e], 0));
        }),
      );
    }
    const Wo = await values(attn.dense.weight),
      bo = await values(attn.dense.bias!);
    const expected = Array.from({ length: T * 16 }, (_, n) => {
      const t = Math.floor(n / 16),
        o = n % 16;
      const merged = heads.flatMap((hd) => hd[t]);
      return bo[o] + merged.reduce((a, mv, c) => a + Wo[o * 16 + c] * mv, 0);
    });
    got.forEach((g, i) => expect(g).toBeCloseTo(expected[i], 10));
  });

  it('a safetensors round trip restores identical logits', async () => {
    const dir = `test/.tmp/models-${process.pid}`;
    await mkdir(dir, { recursive: true });
    for (const kind of ['llama', 'neox'] as Kind[]) {
      const a = tinyModel(kind, { type: 'clex', max_factor: 4 }, { seed: 3 });
      const b = tinyModel(kind, { type: 'clex', max_factor: 4 }, { seed: 4 });
      await io.saveSafetensors(`${dir}/${kind}.safetensors`, a.stateDict());
      const loaded = await io.loadSafetensors(`${dir}/${kind}.safetensors`, { device: 'cpu' });
      b.loadStateDict(loaded);
      a.eval();
      b.eval();
      const x = ids([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]]);
      const la = await values((await noGrad(() => a.forward(x))).logits);
      const lb = await values((await noGrad(() => b.forward(x))).logits);
      expect(lb).toEqual(la);
    }
    await rm(dir, { recursive: true, force: true });
  });
});

describe('decoder layers', () => {
  // Every residual add runs fused into a norm (addRmsNorm / addLayerNorm): a layer hands (h, mlp(n2(h)))
  // to the next, whose input norm adds them. hidden + pending must still equal the pre-norm definition
  // h = x + attn(n1(x)), out = h + mlp(n2(h)).
  const settled = ({ hidden, pending }: models.ResidualStream) => (pending ? hidden.add(pending) : hidden);
  for (const device of ['cpu', 'webgpu'] as const) {
    it(`equal their sequential pre-norm definition (LLaMA, GPT-NeoX without parallel residual; ${device})`, async () => {
      const dtype = device === 'cpu' ? ('float64' as const) : ('float32' as const);
      const llama = tinyModel('llama', null, { device }) as models.LlamaForCausalLM;
      const neox = new models.GPTNeoXForCausalLM(
        {
          vocab_size: 11,
          hidden_size: 16,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          intermediate_size: 24,
          rotary_pct: 0.5,
          max_position_embeddings: 8,
          use_parallel_residual: false,
          initializer_range: 0.3,
        },
        { device, dtype },
      );
      const T = 6;
      const x = tensor(
        Float64Array.from({ length: 2 * T * 16 }, (_, i) => Math.sin(i * 0.37)),
        { shape: [2, T, 16], dtype, device },
      );
      const close = async (got: Tensor, want: Tensor) => {
        const [g, w] = [await values(got), await values(want)];
        g.forEach((v, i) =>
          expect(Math.abs(v - w[i])).toBeLessThanOrEqual((device === 'cpu' ? 1e-12 : 1e-5) * (1 + Math.abs(w[i]))),
        );
      };
      await noGrad(async () => {
        const l = llama.model.layers.at(0),
          eps = llama.config.rms_norm_eps;
        const ropeL = await llama.rotary.forward({ length: T, device, dtype, training: false });
        const hL = x.add(l.self_attn.forward(F.rmsNorm(x, l.input_layernorm.weight, eps), ropeL, undefined));
        await close(
          settled(l.forward({ hidden: x, pending: null }, ropeL, undefined)),
          hL.add(l.mlp.forward(F.rmsNorm(hL, l.post_attention_layernorm.weight, eps))),
        );
        const n = neox.gpt_neox.layers.at(0),
          ln = (m: nn.LayerNorm, t: Tensor) => F.layerNorm(t, m.weight, m.bias, neox.config.layer_norm_eps);
        const ropeN = await neox.rotary.forward({ length: T, device, dtype, training: false });
        const hN = x.add(n.attention.forward(ln(n.input_layernorm, x), ropeN, undefined));
        await close(
          settled(n.forward({ hidden: x, pending: null }, ropeN, undefined)),
          hN.add(n.mlp.forward(ln(n.post_attention_layernorm, hN))),
        );
        // A pending delta from the previous layer is added before the input norm.
        const pending = x.mul(0.3).cos();
        await close(
          settled(l.forward({ hidden: x, pending }, ropeL, undefined)),
          settled(l.forward({ hidden: x.add(pending), pending: null }, ropeL, undefined)),
        );
        await close(
          settled(n.forward({ hidden: x, pending }, ropeN, undefined)),
          settled(n.forward({ hidden: x.add(pending), pending: null }, ropeN, undefined)),
        );
      });
    });
  }
});

describe('causality: changing token j never changes logits before j', () => {
  for (const kind of ['llama', 'neox'] as Kind[]) {
    for (const [name, scaling] of [
      ['none', null],
      ['clex', SCALING_OF.clex],
    ] as const) {
      it(`${kind}, ${name} (cpu float64, property)`, async () => {
        const m = tinyModel(kind, scaling);
        m.eval();
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 2, maxLength: 20 }),
            fc.nat(),
            fc.integer({ min: 0, max: 10 }),
            async (seq, jRaw, tok) => {
              const j = jRaw % seq.length;
              const changed = [...seq];
              changed[j] = (seq[j] + 1 + (tok % 10)) % 11;
              const [a, b] = await noGrad(() =>
                scope(async () => [
                  await values((await m.forward(ids([seq]))).logits),
                  await values((await m.forward(ids([changed]))).logits),
                ]),
              );
              expect(b.slice(0, j * 11)).toEqual(a.slice(0, j * 11));
              expect(b.slice(j * 11)).not.toEqual(a.slice(j * 11));
            },
          ),
          { numRuns: 12, seed: 20261126 },
        );
      });
    }
  }

  it('holds on webgpu for a CLEX LLaMA across a t boundary', async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4 }, { device: 'webgpu' });
    m.eval();
    const seq = Array.from({ length: 19 }, (_, i) => (i * 5) % 11);
    const changed = [...seq];
    changed[12] = (seq[12] + 3) % 11;
    const a = await values((await noGrad(() => m.forward(ids([seq], 'webgpu')))).logits);
    const b = await values((await noGrad(() => m.forward(ids([changed], 'webgpu')))).logits);
    expect(b.slice(0, 12 * 11)).toEqual(a.slice(0, 12 * 11));
    expect(b.slice(12 * 11)).not.toEqual(a.slice(12 * 11));
  });
});

/** Logits of every decoding step with the cache vs the last row of a full forward over the same prefix. */
async function cacheVsFull(m: models.CausalLM, prompt: number[], steps: number): Promise<number> {
  m.eval();
  const cache = new models.KVCache(m.numLayers);
  const seq = [...prompt];
  let worst = 0;
  await noGrad(async () => {
    let input = prompt;
    for (let s = 0; s < steps; s++) {
      await scope(async () => {
        const cached = (await m.forward(ids([input], m.device), { cache })).logits;
        const V = m.vocabSize;
        const last = await values(cached.narrow(1, cached.shape[1] - 1, 1));
        const full = (await m.forward(ids([seq], m.device))).logits;
        const ref = await values(full.narrow(1, seq.length - 1, 1));
        ref.forEach((r, i) => {
          worst = Math.max(worst, Math.abs(r - last[i]) / Math.max(1, Math.abs(r)));
        });
        // Greedy continuation keeps the test deterministic.
        const next = ref.indexOf(Math.max(...ref)) % V;
        seq.push(next);
        input = [next];
      });
    }
  });
  cache.dispose();
  return worst;
}

describe('KV-cache decoding equals a full forward (webgpu float32)', () => {
  for (const [name, scaling] of SCALINGS) {
    it(`${name}: prompt 5, 26 decoding steps past L0 = 8`, async () => {
      for (const kind of ['llama', 'neox'] as Kind[]) {
        const m = tinyModel(kind, scaling, { device: 'webgpu', gqa: true });
        const worst = await cacheVsFull(m, [1, 4, 2, 8, 5], 26);
        expect(worst, `${kind} ${name}`).toBeLessThan(2e-5);
        m.dispose();
      }
    });
  }

  it('CLEX switches tables exactly when t = ceil(L/L0) changes (recompute by default, or re-rotate)', async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4 }, { device: 'webgpu' });
    m.eval();
    for (const policy of ['recompute', 'rerotate'] as const) {
      const cache = new models.KVCache(m.numLayers, policy);
      const counts: number[] = [];
      await noGrad(async () => {
        await scope(async () => m.forward(ids([[1, 2, 3, 4, 5]], 'webgpu'), { cache }));
        for (let L = 6; L <= 32; L++) {
          await scope(async () => m.forward(ids([[L % 11]], 'webgpu'), { cache }));
          counts.push(policy === 'recompute' ? cache.recomputes : cache.rerotations);
        }
      });
      // Lengths 9, 17 and 25 start t = 2, 3, 4.
      const changedAt = counts.map((c, i) => (c !== (i === 0 ? 0 : counts[i - 1]) ? i + 6 : 0)).filter(Boolean);
      expect(changedAt, policy).toEqual([9, 17, 25]);
      expect(cache.length).toBe(32);
      cache.dispose();
    }
  });

  it('the decoding state recomputes when the table changes: every step past L0 for dynamic NTK, never for static rules', async () => {
    expect(models.KVCache).toBe(models.DecodeState);
    for (const [name, scaling, want] of [
      ['dynamic', SCALING_OF.dynamic, [9, 10, 11, 12]],
      ['linear', SCALING_OF.linear, []],
      ['none', null, []],
    ] as const) {
      const m = tinyModel('llama', scaling);
      m.eval();
      const state = new models.DecodeState(m.numLayers);
      const recomputedAt: number[] = [];
      await noGrad(async () => {
        await scope(async () => m.forward(ids([[1, 2, 3, 4, 5]]), { cache: state }));
        for (let L = 6; L <= 12; L++) {
          const before = state.recomputes;
          await scope(async () => m.forward(ids([[L % 11]]), { cache: state }));
          if (state.recomputes > before) recomputedAt.push(L);
        }
      });
      expect(recomputedAt, name).toEqual(want);
      expect(state.length).toBe(12);
      state.dispose();
      m.dispose();
    }
    const dynamic = tinyModel('llama', SCALING_OF.dynamic);
    const at = async (length: number) =>
      (await dynamic.rotary.forward({ length, device: 'cpu', dtype: 'float64', training: false })).frequencies;
    expect(models.sameFrequencies(await at(4), await at(8))).toBe(true);
    expect(models.sameFrequencies(await at(8), await at(9))).toBe(false);
    dynamic.dispose();
    expect(() =>
      new models.DecodeState(2).update(0, tensor([0], { device: 'cpu' }), tensor([0], { device: 'cpu' })),
    ).toThrow(/no step is under way/);
  });

  it("'rerotate' only approximates a full forward once layers ≥ 1 saw the old table", async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4 }, { device: 'cpu' });
    m.eval();
    const cache = new models.KVCache(m.numLayers, 'rerotate');
    const seq = [1, 2, 3, 4, 5, 6, 7, 8];
    await noGrad(() => m.forward(ids([seq]), { cache }));
    const step = await values((await noGrad(() => m.forward(ids([[9]]), { cache }))).logits);
    const full = await values((await noGrad(() => m.forward(ids([[...seq, 9]])))).logits);
    const diff = Math.max(...step.map((v, i) => Math.abs(v - full[full.length - 11 + i])));
    expect(diff).toBeGreaterThan(1e-6);
    expect(diff).toBeLessThan(1);
    cache.dispose();
  });
});

describe('generate', () => {
  it('is reproducible for a seed, greedy at temperature 0, and stops at max_factor·L0 for CLEX', async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 2 }, { device: 'webgpu' });
    const a = await m.generate(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { maxNewTokens: 10, temperature: 0.9, topK: 5, topP: 0.9, seed: 5 },
    );
    const b = await m.generate(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { maxNewTokens: 10, temperature: 0.9, topK: 5, topP: 0.9, seed: 5 },
    );
    expect(a).toEqual(b);
    expect(a[0]).toHaveLength(13);
    expect(a[0].slice(0, 3)).toEqual([1, 2, 3]);
    expect(a.flat().every((t) => t >= 0 && t < 11)).toBe(true);
    // Greedy: each new token is the argmax of a full forward over the prefix.
    const g = (await m.generate([1, 2, 3], { maxNewTokens: 4 }))[0];
    m.eval();
    for (let n = 3; n < g.length; n++) {
      const logits = await values(
        await noGrad(async () => (await m.forward(ids([g.slice(0, n)], 'webgpu'))).logits.narrow(1, n - 1, 1)),
      );
      expect(g[n]).toBe(logits.indexOf(Math.max(...logits)));
    }
    await expect(m.generate([1, 2, 3], { maxNewTokens: 20 })).rejects.toThrow(
      /exceeds the longest CLEX context max_factor·L0 = 2·8 = 16/,
    );
  });

  it('dynamic NTK decoding far past L0 keeps a bounded table cache and no leaked tensors', async () => {
    const m = tinyModel('llama', { type: 'dynamic', factor: 2 });
    await m.generate([1, 2, 3], { maxNewTokens: 4 });
    const live = memory().liveTensors;
    const out = await m.generate([1, 2, 3], { maxNewTokens: 60 });
    expect(out[0]).toHaveLength(63);
    expect(m.rotary.cachedTableCount).toBeLessThanOrEqual(16);
    expect(memory().liveTensors - live).toBeLessThanOrEqual(2 * 16);
  });

  it('sampleToken honours topK and topP', () => {
    const logits = [0, 5, 4, -1, 3];
    const draws = (o: { temperature: number; topK: number; topP: number }) => {
      let s = 0.123;
      const seen = new Set<number>();
      for (let i = 0; i < 300; i++)
        seen.add(
          models.sampleToken(logits, o, () => {
            s = (s * 9301 + 0.49297) % 1;
            return s;
          }),
        );
      return [...seen].sort();
    };
    expect(draws({ temperature: 0, topK: 0, topP: 1 })).toEqual([1]);
    expect(draws({ temperature: 1, topK: 2, topP: 1 })).toEqual([1, 2]);
    expect(draws({ temperature: 1, topK: 0, topP: 0.5 })).toEqual([1]);
    expect(draws({ temperature: 100, topK: 0, topP: 1 })).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('cpu and webgpu agree', () => {
  it('on logits for both models (float32 vs float64)', async () => {
    for (const kind of ['llama', 'neox'] as Kind[]) {
      const c = tinyModel(kind, SCALING_OF.yarn);
      const g = tinyModel(kind, SCALING_OF.yarn, { device: 'webgpu' });
      await copyWeights(c, g);
      c.eval();
      g.eval();
      const seq = [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]];
      const a = await values((await noGrad(() => c.forward(ids(seq)))).logits);
      const b = await values((await noGrad(() => g.forward(ids(seq, 'webgpu')))).logits);
      a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(1e-4 * Math.max(1, Math.abs(v))));
    }
  });
});
