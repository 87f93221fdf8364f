// Trains the default tiny CLEX LLaMA on the built-in corpus at training length L0 = 64 characters,
// saves a checkpoint to out/train-clex, and prints a length-extrapolation table: perplexity on held-out
// text at L0, 2L0, 4L0 and 8L0.
//
// What is compared: two models of the same size are trained the same way (same seed for the
// weights, the same batches, same optimizer and schedule): a plain-RoPE baseline and a CLEX model
// (which, in training, samples t ∈ {1..8} and spreads the 64 positions over [0, t·L0)). The baseline's
// weights are then evaluated with each static rule at that length's scale s = L/L0 (PI, NTK-aware,
// YaRN; dynamic NTK at length L equals NTK with s = L/L0 here); the CLEX model uses its learned
// frequencies at t = L/L0. The CLEX weights are also evaluated with plain RoPE, to separate what the
// ODE contributes from what position sampling does.
//
// Usage: npx tsx examples/train-clex.ts [steps=300] [batch=8]
import { deviceInfo, io, manualSeed, memory, models, noGrad, optim, scope, tensor, type Tensor } from '../index.js';
import { loadCorpus } from './data/corpus.js';
import { Progress } from './progress.js';

const STEPS = Number(process.argv[2] ?? 300);
const BATCH = Number(process.argv[3] ?? 8);
const L0 = 64;
const MAX_FACTOR = 8;
const OUT_DIR = 'out/train-clex';

const tokenizer = new models.CharTokenizer();
const corpus = loadCorpus();
const trainIds = tokenizer.encode(corpus.train);
const evalIds = tokenizer.encode(corpus.heldOut);

const baseConfig = {
  vocab_size: tokenizer.vocabSize,
  hidden_size: 64,
  intermediate_size: 176,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  max_position_embeddings: L0,
};

/** A seeded generator for the batches, separate from the global RNG (which CLEX also draws from). */
function batchRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function batch(next: () => number): Tensor {
  const rows: number[] = [];
  for (let b = 0; b < BATCH; b++) {
    const start = Math.floor(next() * (trainIds.length - L0));
    rows.push(...trainIds.slice(start, start + L0));
  }
  return tensor(rows, { dtype: 'int32', shape: [BATCH, L0] });
}

async function trainModel(label: string, config: models.LlamaConfigInput): Promise<{ model: models.LlamaForCausalLM; opt: optim.AdamW; msPerStep: number; finalLoss: number }> {
  manualSeed(1234);
  const model = new models.LlamaForCausalLM(config);
  const opt = new optim.AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const sched = optim.lr.cosineWithWarmup(opt, { warmupSteps: Math.min(20, STEPS), totalSteps: STEPS, minLrRatio: 0.1 });
  const next = batchRng(42);
  const bar = new Progress(STEPS, `  ${label.padEnd(5)}`);
  const WARMUP = Math.min(5, STEPS - 1);
  let tStart = performance.now();
  let loss = NaN;
  for (let step = 1; step <= STEPS; step++) {
    const read = step % 25 === 0 || step === STEPS;
    const value = await scope(async () => {
      const ids = batch(next);
      const out = await model.forward(ids, { labels: ids });
      // backwardAsync: the CLEX frequencies come from a cpu ODE solve whose gradient is read back.
      await out.loss!.backwardAsync();
      optim.clipGradNorm(model.parameters(), 1.0);
      opt.step();
      sched.step();
      opt.zeroGrad();
      return read ? out.loss!.item() : NaN;
    });
    if (step === WARMUP) tStart = performance.now(); // pipelines compiled, pool warm
    if (read) loss = value;
    bar.update(step, read ? { loss } : {});
  }
  const msPerStep = (performance.now() - tStart) / (STEPS - WARMUP);
  return { model, opt, msPerStep, finalLoss: loss };
}

/** Perplexity of next-token prediction over non-overlapping held-out windows of length L. */
async function perplexity(model: models.CausalLM, L: number): Promise<number> {
  const windows: number[] = [];
  for (let s = 0; s + L <= evalIds.length; s += L) windows.push(s);
  if (windows.length === 0) throw new Error(`held-out text (${evalIds.length} chars) is shorter than ${L}`);
  model.eval();
  const loss = await noGrad(() => scope(async () => {
    const ids = tensor(windows.flatMap((s) => evalIds.slice(s, s + L)), { dtype: 'int32', shape: [windows.length, L] });
    const { loss } = await model.forward(ids, { labels: ids });
    return loss!.item();
  }));
  return Math.exp(loss);
}

/** The same weights under another rope rule (CLEX parameters dropped when the rule is not CLEX). */
function withRule(source: models.LlamaForCausalLM, rope_scaling: models.LlamaConfigInput['rope_scaling']): models.LlamaForCausalLM {
  const m = new models.LlamaForCausalLM({ ...baseConfig, rope_scaling });
  m.loadStateDict(source.stateDict(), { strict: false });
  return m;
}

console.log('dawngrad train-clex: tiny LLaMA (2 layers, hidden 64, 4 heads of 16), character level, L0 = 64');
console.log('device:', JSON.stringify(deviceInfo()));
console.log(`corpus: ${trainIds.length} training chars, ${evalIds.length} held-out chars; ${STEPS} steps of ${BATCH}×${L0} tokens\n`);

const clexConfig = { ...baseConfig, rope_scaling: { type: 'clex' as const, max_factor: MAX_FACTOR, param_factor: 1, act: 'tanh' as const } };
const clexRun = await trainModel('clex', clexConfig);
const plainRun = await trainModel('rope', baseConfig);

await io.saveCheckpoint(OUT_DIR, { model: clexRun.model, optimizer: clexRun.opt, step: STEPS, config: clexRun.model.config.toJSON() });
console.log(`\ncheckpoint: ${OUT_DIR}/ (model.safetensors, optimizer.safetensors, config.json, trainer_state.json)`);
console.log(`final training loss: CLEX ${clexRun.finalLoss.toFixed(3)}, plain RoPE ${plainRun.finalLoss.toFixed(3)}`);
console.log(`step time (batch ${BATCH}×${L0}): plain RoPE ${plainRun.msPerStep.toFixed(1)} ms, CLEX ${clexRun.msPerStep.toFixed(1)} ms (CLEX/plain = ${(clexRun.msPerStep / plainRun.msPerStep).toFixed(2)})`);

const lengths = [L0, 2 * L0, 4 * L0, 8 * L0];
const rows: [string, (L: number) => models.CausalLM][] = [
  ['plain RoPE', () => plainRun.model],
  ['PI (linear, s = L/L0)', (L) => withRule(plainRun.model, L > L0 ? { type: 'linear', factor: L / L0 } : null)],
  ['NTK-aware (s = L/L0)', (L) => withRule(plainRun.model, L > L0 ? { type: 'ntk', factor: L / L0 } : null)],
  ['YaRN (s = L/L0)', (L) => withRule(plainRun.model, L > L0 ? { type: 'yarn', factor: L / L0 } : null)],
  ['CLEX weights, plain RoPE', (L) => withRule(clexRun.model, null)],
  ['CLEX (t = L/L0)', () => clexRun.model],
];
console.log(`\nheld-out perplexity by evaluation length (training length L0 = ${L0}):`);
console.log(`| method | ${lengths.map((L) => `${L}`).join(' | ')} |`);
console.log(`|---|${lengths.map(() => '---').join('|')}|`);
for (const [name, make] of rows) {
  const cells: string[] = [];
  for (const L of lengths) {
    const m = make(L);
    cells.push((await perplexity(m, L)).toFixed(2));
    if (m !== plainRun.model && m !== clexRun.model) m.dispose();
  }
  console.log(`| ${name} | ${cells.join(' | ')} |`);
}

const prompt = 'The keeper ';
const sample = await clexRun.model.generate(tokenizer.encode(prompt), { maxNewTokens: 160, temperature: 0.8, topK: 20, seed: 7 });
console.log(`\nCLEX sample (${prompt.length + 160} chars, crossing t = 1 → 2 → 3 with a re-rotated KV cache):\n${tokenizer.decode(sample[0])}`);
const mem = memory();
console.log(`\n${mem.dispatches} dispatches in ${mem.submits} submits, ${mem.readbacks} readbacks; peak ${(mem.peakBytes / 2 ** 20).toFixed(1)} MiB`);
process.exit(0);
