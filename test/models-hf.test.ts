// Hugging Face folders in and out (fromPretrained / savePretrained: sharding, F32/F16/BF16, errors),
// tokenizer.json tokenizers, newer LLaMA-family config fields, and the reference CLEX options
// (time_dt → rk4, log_scale, the persistent inv_freq buffer). Tiny models on the cpu backend.
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { io, manualSeed, models, nn, noGrad, ode, optim, scope, tensor } from '../index.js';
import { ids, values, type Kind } from './models-helpers.js';
import { MERGES, smallBpeTokenizerJson } from './hf-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dawngrad-hf-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(root, `m${dirs++}`);

/** A tiny float32 cpu model (hidden 16, 2 layers, vocab 11, L0 = 8) with extra config fields. */
function build(kind: Kind, extra: Record<string, unknown> = {}, seed = 3): models.CausalLM {
  manualSeed(seed);
  const common = {
    vocab_size: 11,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 8,
    initializer_range: 0.3,
    ...extra,
  };
  const opts = { device: 'cpu' as const, dtype: 'float32' as const };
  return kind === 'llama'
    ? new models.LlamaForCausalLM({ num_key_value_heads: 1, ...common }, opts)
    : new models.GPTNeoXForCausalLM({ rotary_pct: 0.5, ...common }, opts);
}

const X = [
  [1, 5, 2, 9, 4, 0, 7, 3, 3, 6],
  [2, 2, 8, 1, 0, 10, 4, 5, 9, 1],
];

async function logits(m: models.CausalLM, rows = X): Promise<number[]> {
  m.eval();
  return scope(async () => values((await noGrad(() => m.forward(ids(rows)))).logits));
}

const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

async function headerDTypes(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
    for (const t of Object.values((await io.readSafetensorsHeader(join(dir, f))).tensors)) out.add(t.dtype);
  }
  return out;
}

describe('savePretrained / fromPretrained round trips', () => {
  const cases: [Kind, 'float32' | 'float16' | 'bfloat16', boolean][] = [
    ['llama', 'float32', false],
    ['llama', 'float32', true],
    ['llama', 'float16', true],
    ['llama', 'bfloat16', false],
    ['neox', 'float32', false],
    ['neox', 'float32', true],
    ['neox', 'float16', false],
    ['neox', 'bfloat16', true],
  ];
  for (const [kind, dtype, sharded] of cases) {
    it(`${kind} ${dtype} ${sharded ? 'sharded' : 'one file'}: logits equal after reload`, async () => {
      const m = build(kind);
      const before = await logits(m);
      const dir = freshDir();
      await m.savePretrained(dir, { dtype, maxShardSize: sharded ? 3000 : '5GB' });
      const files = readdirSync(dir);
      const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
      if (sharded) {
        expect(shards.length).toBeGreaterThan(1);
        expect(files).toContain('model.safetensors.index.json');
        expect(files).not.toContain('model.safetensors');
        const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
        expect(Object.keys(index.weight_map).sort()).toEqual(Object.keys(m.stateDict()).sort());
        expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
        const bytes = dtype === 'float32' ? 4 : 2;
        expect(index.metadata.total_size).toBe(m.parameters().reduce((s, p) => s + p.size * bytes, 0));
      } else {
        expect(shards).toEqual([]);
        expect(files).toContain('model.safetensors');
      }
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      expect(config.torch_dtype).toBe(dtype);
      expect(config.model_type).toBe(kind === 'llama' ? 'llama' : 'gpt_neox');
      expect(config.architectures).toEqual([kind === 'llama' ? 'LlamaForCausalLM' : 'GPTNeoXForCausalLM']);
      expect(await headerDTypes(dir)).toEqual(new Set([{ float32: 'F32', float16: 'F16', bfloat16: 'BF16' }[dtype]]));

      const loaded = await models.fromPretrained(dir, { device: 'cpu' });
      expect(loaded.constructor).toBe(m.constructor);
      expect(loaded.training).toBe(false);
      const after = await logits(loaded);
      if (dtype === 'float32') expect(after).toEqual(before);
      else {
        // 16-bit storage rounds each weight once: close to the original, and saving the reloaded model
        // again in the same dtype changes nothing (the rounding is idempotent).
        expect(maxAbsDiff(after, before)).toBeLessThan(dtype === 'float16' ? 1e-2 : 5e-2);
        expect(maxAbsDiff(after, before)).toBeGreaterThan(0);
        const again = freshDir();
        await loaded.savePretrained(again, { dtype, maxShardSize: sharded ? 3000 : '5GB' });
        const twice = await models.fromPretrained(again, { device: 'cpu' });
        expect(await logits(twice)).toEqual(after);
        twice.dispose();
      }
      m.dispose();
      loaded.dispose();
    });
  }

  it('loads onto webgpu from F16 shards (converted to float32 there)', async () => {
    const m = build('llama');
    const dir = freshDir();
    await m.savePretrained(dir, { dtype: 'float16', maxShardSize: '2KB' });
    const cpu = await models.fromPretrained(dir, { device: 'cpu' });
    const gpu = await models.fromPretrained(dir, { device: 'webgpu' });
    expect([gpu.device, gpu.dtype]).toEqual(['webgpu', 'float32']);
    const ref = await logits(cpu);
    const got = await scope(async () => values((await noGrad(() => gpu.forward(ids(X, 'webgpu')))).logits));
    expect(maxAbsDiff(got, ref)).toBeLessThan(1e-4);
    for (const x of [m, cpu, gpu]) x.dispose();
  });

  it('CLEX models with tied embeddings, head_dim apart from hidden/heads, biases and log_scale round-trip their config', async () => {
    const m = build('llama', {
      tie_word_embeddings: true,
      head_dim: 4,
      attention_bias: true,
      mlp_bias: true,
      log_scale: true,
      rope_scaling: { type: 'clex', max_factor: 4, time_dt: 0.1 },
    });
    nn.init.normal(m.clex!.proj_func.ode_down_proj, 0, 0.3);
    const names = Object.keys(m.stateDict());
    expect(names).toContain('model.layers.0.self_attn.q_proj.bias');
    expect(names).toContain('model.layers.0.mlp.down_proj.bias');
    expect(names).not.toContain('lm_head.weight');
    expect(m.stateDict()['model.layers.0.self_attn.q_proj.weight'].shape).toEqual([8, 16]); // 2 heads × head_dim 4
    const dir = freshDir();
    await m.savePretrained(dir);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config.rope_scaling).toMatchObject({
      type: 'clex',
      max_factor: 4,
      param_factor: 1,
      time_dt: 0.1,
      act: 'tanh',
      ode_method: 'rk4',
    });
    expect([
      config.head_dim,
      config.attention_bias,
      config.mlp_bias,
      config.log_scale,
      config.tie_word_embeddings,
    ]).toEqual([4, true, true, true, true]);
    // The reference CLEX checkpoints' persistent buffer is written too, and checked on load.
    expect(Object.keys((await io.readSafetensorsHeader(join(dir, 'model.safetensors'))).tensors)).toContain(
      'model.clex_layer.inv_freq',
    );
    const loaded = await models.fromPretrained(dir, { device: 'cpu' });
    const c = loaded.config as models.LlamaConfig;
    expect([
      c.head_dim,
      c.attention_bias,
      c.mlp_bias,
      c.log_scale,
      c.tie_word_embeddings,
      c.rope_scaling?.ode_method,
    ]).toEqual([4, true, true, true, true, 'rk4']);
    const long = [[1, 5, 2, 9, 4, 0, 7, 3, 3, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]; // 20 tokens: t = 3
    expect(await logits(loaded, long)).toEqual(await logits(m, long));
    // The reference's own spelling: its architecture name and flags, rope_scaling with its four keys only.
    const ref = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const { max_factor, param_factor, time_dt, act } = ref.rope_scaling;
    Object.assign(ref, {
      architectures: ['CLEXLlamaForCausalLM'],
      use_flashattn: true,
      rope_scaling: { type: 'clex', max_factor, param_factor, time_dt, act },
    });
    delete ref.rope_parameters;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(ref));
    const asReference = await models.fromPretrained(dir, { device: 'cpu' });
    expect([asReference.config.rope_scaling?.ode_method, asReference.config.log_scale]).toEqual(['rk4', true]);
    expect(await logits(asReference, long)).toEqual(await logits(m, long));
    for (const x of [m, loaded, asReference]) x.dispose();
  });

  it('re-saving with fewer shards removes the old shards and index', async () => {
    const m = build('neox');
    const dir = freshDir();
    await m.savePretrained(dir, { maxShardSize: 2000 });
    expect(readdirSync(dir).filter((f) => f.startsWith('model-')).length).toBeGreaterThan(2);
    await m.savePretrained(dir);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    const loaded = await models.fromPretrained(dir, { device: 'cpu' });
    expect(await logits(loaded)).toEqual(await logits(m));
    m.dispose();
    loaded.dispose();
  });

  it('reads transformers-5 configs (rope_parameters, partial_rotary_factor) and skips recomputed buffers', async () => {
    const m = build('neox', { rope_scaling: { type: 'dynamic', factor: 2 }, rotary_emb_base: 5000 });
    const dir = freshDir();
    await m.savePretrained(dir);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config.rope_parameters).toEqual({
      rope_type: 'dynamic',
      factor: 2,
      rope_theta: 5000,
      partial_rotary_factor: 0.5,
    });
    // Keep only the transformers-5 spelling, and add the buffers older checkpoints carry.
    for (const k of ['rope_scaling', 'rotary_emb_base', 'rotary_pct', 'rope_theta']) delete config[k];
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const sd = { ...m.stateDict() };
    const extras = {
      'gpt_neox.layers.0.attention.rotary_emb.inv_freq': tensor([1, 0.1], { device: 'cpu' }),
      'gpt_neox.layers.0.attention.bias': tensor([1], { device: 'cpu' }),
    };
    await io.saveSafetensors(join(dir, 'model.safetensors'), { ...sd, ...extras });
    const loaded = await models.fromPretrained(dir, { device: 'cpu' });
    const c = loaded.config as models.GPTNeoXConfig;
    expect([c.rotary_emb_base, c.rotary_pct, c.rope_scaling?.type, c.rope_scaling?.factor]).toEqual([
      5000,
      0.5,
      'dynamic',
      2,
    ]);
    expect(await logits(loaded)).toEqual(await logits(m));
    m.dispose();
    loaded.dispose();
  });

  it('a plain-RoPE folder loads as CLEX with a config override (fresh ODE weights), and round-trips after training', async () => {
    const m = build('llama');
    const dir = freshDir();
    await m.savePretrained(dir);
    // 4 layers the folder lacks: 36 missing keys, the first 20 listed.
    await expect(models.fromPretrained(dir, { config: { num_hidden_layers: 6 } })).rejects.toThrow(
      /missing keys: model\.layers\.2\..*, … and 16 more/,
    );
    const clex = await models.fromPretrained(dir, {
      device: 'cpu',
      config: { rope_scaling: { type: 'clex', max_factor: 4, time_dt: 0.1 } },
    });
    expect(clex.config.rope_scaling?.type).toBe('clex');
    expect(await logits(clex, [X[0].slice(0, 8)])).toEqual(await logits(m, [X[0].slice(0, 8)])); // t = 1 up to L0: the original rope
    clex.train();
    const opt = new optim.AdamW(clex.parameters(), { lr: 1e-2 });
    const batch = ids(X.map((r) => r.slice(0, 8)));
    for (let step = 0; step < 3; step++) {
      await scope(async () => {
        const { loss } = await clex.forward(batch, { labels: batch });
        await loss!.backwardAsync();
        opt.step();
        opt.zeroGrad();
      });
    }
    expect(Math.max(...(await values(clex.clex!.proj_func.ode_down_proj)).map(Math.abs))).toBeGreaterThan(0);
    const out = freshDir();
    await clex.savePretrained(out);
    const back = await models.fromPretrained(out, { device: 'cpu' });
    const long = [[...X[0], ...X[1]].slice(0, 20)];
    expect(await logits(back, long)).toEqual(await logits(clex, long));
    for (const x of [m, clex, back]) x.dispose();
  });

  it('saves the tokenizer files next to the weights', async () => {
    const m = build('llama');
    const tok = models.Tokenizer.fromJSON(smallBpeTokenizerJson(), { eos_token: '<|endoftext|>', model_max_length: 8 });
    const dir = freshDir();
    await m.savePretrained(dir, { tokenizer: tok });
    expect(readdirSync(dir).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const back = await models.Tokenizer.fromFile(dir);
    expect(back.encode('the hello there')).toEqual(tok.encode('the hello there'));
    expect(back.eosTokenId).toBe(tok.eosTokenId);
    m.dispose();
  });
});

describe('fromPretrained / savePretrained errors', () => {
  async function savedFolder(kind: Kind = 'llama', opts: models.SavePretrainedOptions = {}): Promise<string> {
    const m = build(kind);
    const dir = freshDir();
    await m.savePretrained(dir, opts);
    m.dispose();
    return dir;
  }
  const editConfig = (dir: string, edit: (c: Record<string, unknown>) => void) => {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    edit(c);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
  };

  it('missing files', async () => {
    await expect(models.fromPretrained(join(root, 'nowhere'))).rejects.toThrow(
      /fromPretrained: .*nowhere is not a folder/,
    );
    const dir = await savedFolder();
    unlinkSync(join(dir, 'config.json'));
    await expect(models.fromPretrained(dir)).rejects.toThrow(/has no config\.json/);
    const dir2 = await savedFolder();
    unlinkSync(join(dir2, 'model.safetensors'));
    writeFileSync(join(dir2, 'pytorch_model.bin'), 'x');
    await expect(models.fromPretrained(dir2)).rejects.toThrow(
      /has neither model\.safetensors nor model\.safetensors\.index\.json \(found pytorch_model\.bin: only safetensors/,
    );
  });

  it('unknown model_type', async () => {
    const dir = await savedFolder();
    editConfig(dir, (c) => {
      c.model_type = 'mamba';
    });
    await expect(models.fromPretrained(dir)).rejects.toThrow(
      /unknown model_type "mamba" in .*config\.json; supported: llama, gpt_neox/,
    );
  });

  it('a shard named in the index but absent', async () => {
    const dir = await savedFolder('neox', { maxShardSize: 2000 });
    const shard = readdirSync(dir).filter((f) => f.startsWith('model-'))[1];
    unlinkSync(join(dir, shard));
    await expect(models.fromPretrained(dir)).rejects.toThrow(new RegExp(`names shard ${shard} but it is not in`));
  });

  it('missing, unexpected and wrong-shape keys, all in one message', async () => {
    const dir = await savedFolder();
    const sd = await io.loadSafetensors(join(dir, 'model.safetensors'), { device: 'cpu' });
    delete sd['model.norm.weight'];
    delete sd['model.layers.1.mlp.up_proj.weight'];
    sd['model.layers.0.self_attn.q_proj.weight'] = tensor(new Float32Array(16 * 4), { device: 'cpu', shape: [4, 16] });
    sd['model.layers.0.extra.weight'] = tensor([1, 2], { device: 'cpu' });
    await io.saveSafetensors(join(dir, 'model.safetensors'), sd);
    const err = await models.fromPretrained(dir).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(
      /^fromPretrained: the weights in .* do not fit the LlamaForCausalLM that config\.json describes/,
    );
    expect(err?.message).toMatch(/missing keys: model\.layers\.1\.mlp\.up_proj\.weight, model\.norm\.weight/);
    expect(err?.message).toMatch(/unexpected keys: model\.layers\.0\.extra\.weight/);
    expect(err?.message).toMatch(
      /wrong shapes: model\.layers\.0\.self_attn\.q_proj\.weight: file \[4, 16\] vs model \[16, 16\]/,
    );
  });

  it("a reference CLEX inv_freq that does not match the config's rope base", async () => {
    const m = build('llama', { rope_scaling: { type: 'clex', max_factor: 2 } });
    const dir = freshDir();
    await m.savePretrained(dir);
    editConfig(dir, (c) => {
      c.rope_theta = 500;
    });
    await expect(models.fromPretrained(dir)).rejects.toThrow(
      /model\.clex_layer\.inv_freq holds inverse frequencies .* that do not match this config's rope base/,
    );
    m.dispose();
  });

  it('bad save options', async () => {
    const m = build('llama');
    await expect(m.savePretrained(freshDir(), { maxShardSize: '12 parsecs' })).rejects.toThrow(
      /savePretrained: maxShardSize must be a positive number of bytes or a size like '2GB'.*got "12 parsecs"/,
    );
    await expect(m.savePretrained(freshDir(), { dtype: 'int8' as never })).rejects.toThrow(
      /savePretrained: dtype must be one of float32, float16, bfloat16, got 'int8'/,
    );
    await expect(m.savePretrained(freshDir(), { tokenizer: new models.CharTokenizer() })).rejects.toThrow(
      /savePretrained: tokenizer CharTokenizer has no Hugging Face files/,
    );
    expect([models.parseShardSize('2GB'), models.parseShardSize('10KiB'), models.parseShardSize(500)]).toEqual([
      2e9, 10240, 500,
    ]);
    m.dispose();
  });
});

describe('HF tokenizer.json', () => {
  const tok = models.Tokenizer.fromJSON(smallBpeTokenizerJson());

  it('a small byte-level BPE encodes with its merges and decodes back', () => {
    // Merges (in priority order) build 'the', 'Ġthe' (space + the) and 'hello'; the rest stay bytes.
    expect(tok.tokenize('the hello there')).toEqual(['the', 'Ġ', 'hello', 'Ġthe', 'r', 'e']);
    const id = (t: string) => tok.tokenToId(t)!;
    expect(tok.encode('the hello there')).toEqual([id('the'), id('Ġ'), id('hello'), id('Ġthe'), id('r'), id('e')]);
    expect(id('the')).toBe(256 + MERGES.findIndex(([a, b]) => a + b === 'the'));
    expect(tok.vocabSize).toBe(256 + MERGES.length + 1);
    expect(tok.eosTokenId).toBe(tok.vocabSize - 1); // '<|endoftext|>' found among the special tokens
    expect(tok.encode('<|endoftext|>')).toEqual([tok.eosTokenId]);
    expect(tok.decode(tok.encode('the hello there'))).toBe('the hello there');
    expect(() => tok.decode([tok.vocabSize])).toThrow(
      /HFTokenizer\.decode: id 266 is not in the vocabulary \(size 266\)/,
    );
  });

  it('is lossless on arbitrary Unicode text (byte-level BPE)', () => {
    expect(tok.decode(tok.encode('a , b . c'))).toBe('a , b . c'); // no clean-up of spaces before punctuation
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => tok.decode(tok.encode(s)) === s),
      { numRuns: 200 },
    );
  });

  it("applies transformers' space clean-up when tokenizer_config.json asks for it", () => {
    const cleaning = models.Tokenizer.fromJSON(smallBpeTokenizerJson(), { clean_up_tokenization_spaces: true });
    expect(cleaning.decode(cleaning.encode('a , b .'))).toBe('a, b.');
  });

  it('loads from a file or a folder, with tokenizer_config.json special tokens, and reports bad input', async () => {
    const dir = freshDir();
    await scope(async () => {
      const m = build('llama');
      await m.savePretrained(dir, {
        tokenizer: models.Tokenizer.fromJSON(smallBpeTokenizerJson(), {
          eos_token: { content: 'r' },
          bos_token: 'the',
        }),
      });
    });
    const fromFolder = await models.Tokenizer.fromFile(dir);
    const fromFile = await models.Tokenizer.fromFile(join(dir, 'tokenizer.json'));
    expect([fromFolder.eosTokenId, fromFolder.bosTokenId]).toEqual([tok.tokenToId('r'), tok.tokenToId('the')]);
    expect(fromFile.encode('hello the')).toEqual(fromFolder.encode('hello the'));
    await expect(models.Tokenizer.fromFile(join(root, 'absent.json'))).rejects.toThrow(
      /Tokenizer\.fromFile: .*absent\.json does not exist/,
    );
    await expect(models.Tokenizer.fromFile(root)).rejects.toThrow(/has no tokenizer\.json/);
    writeFileSync(join(root, 'broken.json'), '{ "model": ');
    await expect(models.Tokenizer.fromFile(join(root, 'broken.json'))).rejects.toThrow(
      /broken\.json is not valid JSON/,
    );
    expect(() => models.Tokenizer.fromJSON({ vocab: {} })).toThrow(
      /HFTokenizer: the given tokenizer JSON is not a Hugging Face tokenizer\.json/,
    );
  });
});

describe('config fields of newer LLaMA-family folders', () => {
  it("rope_type spellings: 'default' is plain RoPE, llama3 keeps short wavelengths, divides long ones, blends between", () => {
    expect(models.normalizeRopeScaling('t', { rope_type: 'default' } as never)).toBeNull();
    expect(models.normalizeRopeScaling('t', { rope_type: 'linear', factor: 2 } as never)?.type).toBe('linear');
    const rs = models.normalizeRopeScaling('t', {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    } as never)!;
    const rot = new models.RotaryEmbedding({ dim: 32, base: 10000, maxPositionEmbeddings: 512, scaling: rs });
    const orig = rot.originalInverseFrequencies();
    const { invFreq } = rot.inverseFrequencies(100);
    let kept = 0,
      divided = 0,
      blended = 0;
    orig.forEach((t, i) => {
      const wavelength = (2 * Math.PI) / t;
      if (wavelength < 64 / 4) {
        expect(invFreq[i]).toBe(t);
        kept++;
      } else if (wavelength > 64) {
        expect(invFreq[i]).toBeCloseTo(t / 8, 15);
        divided++;
      } else {
        expect(invFreq[i]).toBeLessThan(t);
        expect(invFreq[i]).toBeGreaterThan(t / 8);
        blended++;
      }
    });
    expect([kept > 0, divided > 0, blended > 0]).toEqual([true, true, true]);
    expect(() =>
      models.normalizeRopeScaling('t', {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 4,
        high_freq_factor: 1,
      } as never),
    ).toThrow(/high_freq_factor \(1\) must exceed low_freq_factor \(4\)/);
    expect(() => models.normalizeRopeScaling('t', { rope_type: 'longrope' } as never)).toThrow(
      /rope_scaling\.type must be one of .* got 'longrope'/,
    );
  });

  it('GPT-NeoX rejects a head_dim other than hidden_size / heads', () => {
    expect(() => new models.GPTNeoXConfig({ hidden_size: 16, num_attention_heads: 2, head_dim: 4 })).toThrow(
      /GPTNeoXConfig: head_dim 4 differs from hidden_size \/ num_attention_heads = 8/,
    );
  });
});

describe('reference CLEX configs', () => {
  it('time_dt selects fixed-step rk4 at that step (dopri5 without it, unless ode_method says otherwise)', async () => {
    expect(models.normalizeRopeScaling('t', { type: 'clex' })?.ode_method).toBe('dopri5');
    expect(models.normalizeRopeScaling('t', { type: 'clex', time_dt: 0.01 })?.ode_method).toBe('rk4');
    expect(models.normalizeRopeScaling('t', { type: 'clex', time_dt: 0.01, ode_method: 'dopri5' })?.ode_method).toBe(
      'dopri5',
    );
    for (const [scaling, method, nfe] of [
      [{ time_dt: 0.1 }, 'rk4', 4 * 30],
      [{}, 'dopri5', -1],
    ] as const) {
      const m = build('llama', { rope_scaling: { type: 'clex', max_factor: 4, ...scaling } });
      nn.init.normal(m.clex!.proj_func.ode_down_proj, 0, 0.3);
      await logits(m, [Array.from({ length: 20 }, (_, i) => i % 11)]); // t = 3: the grid 1..4 is solved once
      const stats = ode.lastStats();
      expect(stats.method).toBe(method);
      // rk4 with step 0.1 over [1, 4]: 30 steps of 4 evaluations.
      if (nfe > 0) expect([stats.nfeForward, stats.accepted]).toEqual([nfe, 30]);
      m.dispose();
    }
  });

  it('log_scale changes attention only past L0, and the KV cache still matches a full forward', async () => {
    const plain = build('llama', { rope_scaling: { type: 'clex', max_factor: 4 } });
    const scaled = build('llama', { rope_scaling: { type: 'clex', max_factor: 4 }, log_scale: true });
    for (const m of [plain, scaled]) nn.init.normal(m.clex!.proj_func.ode_down_proj, 0, 0.3);
    await scope(async () => scaled.loadStateDict(plain.stateDict()));
    const short = [X[0].slice(0, 8)]; // L = L0
    expect(await logits(scaled, short)).toEqual(await logits(plain, short));
    const long = [[...X[0], ...X[1]].slice(0, 12)]; // L = 12 > L0: every query × log 12 / log 8
    const a = await logits(scaled, long),
      b = await logits(plain, long);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-3);
    expect(models.queryLogScale(true, 12, 8)).toBeCloseTo(Math.log(12) / Math.log(8), 15);
    expect([models.queryLogScale(true, 8, 8), models.queryLogScale(false, 12, 8)]).toEqual([1, 1]);
    // Decoding token by token past L0 gives the full forward's logits for the last token.
    const cache = new models.KVCache(scaled.numLayers);
    let last: number[] = [];
    await noGrad(async () => {
      for (let i = 0; i < 12; i++)
        last = await scope(async () => values((await scaled.forward(ids([[long[0][i]]]), { cache })).logits));
    });
    expect(maxAbsDiff(last, a.slice(11 * 11))).toBeLessThan(1e-5);
    cache.clear();
    plain.dispose();
    scaled.dispose();
  });

  it('a reference-style config (time_dt 0.01, log_scale) trains and generates past L0', async () => {
    const m = build('llama', {
      rope_scaling: { type: 'clex', max_factor: 2, param_factor: 1, time_dt: 0.01, act: 'tanh' },
      log_scale: true,
    });
    m.train();
    const opt = new optim.AdamW(m.parameters(), { lr: 1e-2 });
    const batch = ids(X.map((r) => r.slice(0, 8)));
    const losses: number[] = [];
    for (let step = 0; step < 6; step++) {
      losses.push(
        await scope(async () => {
          const { loss } = await m.forward(batch, { labels: batch });
          await loss!.backwardAsync();
          opt.step();
          opt.zeroGrad();
          return loss!.item();
        }),
      );
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[5]).toBeLessThan(losses[0]);
    m.eval();
    const out = await scope(() => m.generate([1, 2, 3], { maxNewTokens: 12, topK: 3, seed: 2 })); // 15 tokens: t = 2
    expect(out[0].length).toBe(15);
    expect(ode.lastStats().method).toBe('rk4');
    m.dispose();
  });
});
