// Exports tiny LLaMA / GPT-NeoX models (plain, linear, dynamic, YaRN, tied, sequential residual) as
// Hugging Face checkpoints (config.json + model.safetensors, HF parameter names) with our float64
// logits, for examples/hf_parity.py to compare against transformers' own implementation:
//   npx tsx examples/hf-parity.ts && python3 examples/hf_parity.py out/hf-parity
// (Measured with transformers 5.17 / torch 2.11: every weight loads with no missing or unexpected
// key, and logits agree to ~5e-6, the precision of HF's float32 rotary tables.)
import { mkdirSync, writeFileSync } from 'node:fs';
import { io, manualSeed, models, noGrad, scope, tensor } from '../index.js';
const OUT = process.argv[2] ?? 'out/hf-parity';
const cases: [string, 'llama' | 'neox', any, any][] = [
  ['llama_plain', 'llama', null, {}],
  ['llama_linear', 'llama', { type: 'linear', factor: 2 }, {}],
  ['llama_dynamic', 'llama', { type: 'dynamic', factor: 2 }, {}],
  ['llama_yarn', 'llama', { type: 'yarn', factor: 4 }, {}],
  ['llama_tied', 'llama', null, { tie_word_embeddings: true }],
  ['neox_plain', 'neox', null, {}],
  ['neox_sequential', 'neox', null, { use_parallel_residual: false }],
  ['neox_dynamic', 'neox', { type: 'dynamic', factor: 2 }, {}],
];
for (const [name, kind, rs, extra] of cases) await scope(async () => {
  manualSeed(5);
  const common = { vocab_size: 37, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 16, rope_scaling: rs, initializer_range: 0.2, ...extra };
  const opts = { device: 'cpu' as const, dtype: 'float64' as const };
  const m = kind === 'llama'
    ? new models.LlamaForCausalLM({ ...common, intermediate_size: 96, num_key_value_heads: 2, rope_theta: 5000 }, opts)
    : new models.GPTNeoXForCausalLM({ ...common, intermediate_size: 96, rotary_pct: 0.25, rotary_emb_base: 5000 }, opts);
  m.eval();
  const T = 40;
  const ids = Array.from({ length: 2 * T }, (_, i) => (i * 13 + 7) % 37);
  const x = tensor(ids, { dtype: 'int32', device: 'cpu', shape: [2, T] });
  const out = await noGrad(() => m.forward(x, { labels: x }));
  const dir = `${OUT}/${name}`;
  mkdirSync(dir, { recursive: true });
  await io.saveSafetensors(`${dir}/model.safetensors`, m.stateDict(), { format: 'pt' });
  const cfg: any = (m.config as any).toJSON();
  if (rs) cfg.rope_scaling = { type: rs.type, rope_type: rs.type === 'ntk' ? 'default' : rs.type, factor: rs.factor, original_max_position_embeddings: 16 };
  // transformers ≥ 5 reads rope settings from rope_parameters; older versions from the legacy keys above.
  const base = kind === 'llama' ? cfg.rope_theta : cfg.rotary_emb_base;
  cfg.rope_parameters = { rope_type: rs ? rs.type : 'default', rope_theta: base, ...(rs ? { factor: rs.factor } : {}), ...(kind === 'neox' ? { partial_rotary_factor: 0.25 } : {}) };
  if (kind === 'neox') {
    cfg.partial_rotary_factor = 0.25;
    cfg.rope_theta = base;
  }
  writeFileSync(`${dir}/config.json`, JSON.stringify(cfg, null, 1));
  writeFileSync(`${dir}/ids.json`, JSON.stringify([ids.slice(0, T), ids.slice(T)]));
  writeFileSync(`${dir}/logits.json`, JSON.stringify(Array.from(await out.logits.data())));
  writeFileSync(`${dir}/loss.json`, JSON.stringify(await out.loss!.item()));
  m.dispose();
});
console.log(`wrote ${cases.length} checkpoints to ${OUT}/`);
process.exit(0);
