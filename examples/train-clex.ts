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
// Checkpoints of both models go to out/train-clex/{clex,rope} every 100 steps and at the end;
// `--resume` continues from them (batches are a function of the step, the RNG state is restored).
//
// Usage: npx tsx examples/train-clex.ts [steps=300] [batch=8] [--resume]
import { deviceInfo, io, manualSeed, memory, models, noGrad, optim, scope, seededUniform, tensor, type Tensor } from '../index.js';
import { existsSync } from 'node:fs';
import { loadCorpus } from './data/corpus.js';
import { Progress } from './progress.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const RESUME = process.argv.includes('--resume');
const STEPS = Number(args[0] ?? 300);
const BATCH = Number(args[1] ?? 8);
const SAVE_EVERY = 100;
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


/** The training batch of a given step: the same for both models, and on a resumed run. */
function batch(step: number): Tensor {
  const next = seededUniform(step * 7919 + 42);
  const rows: number[] = [];
  for (let b = 0; b < BATCH; b++) {
    const start = Math.floor(next() * (trainIds.length - L0));
    rows.push(...trainIds.slice(start, start + L0));
  }
  return tensor(rows, { dtype: 'int32', shape: [BATCH, L0] });
}

interface Run {
  label: string;
  model: models.LlamaForCausalLM;
  opt: optim.AdamW;
  sched: optim.LRScheduler;
  ms: number;
  timedSteps: number;
  loss: number;
}

function makeRun(label: string, config: models.LlamaConfigInput): Run {
  manualSeed(1234); // the same initial weights for both models (CLEX draws its ODE weights after them)
  const model = new models.LlamaForCausalLM(config);
  const opt = new optim.AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const sched = optim.lr.cosineWithWarmup(opt, { warmupSteps: Math.min(20, STEPS), totalSteps: STEPS, minLrRatio: 0.1 });
  return { label, model, opt, sched, ms: 0, timedSteps: 0, loss: NaN };
}

/** Runs steps [from, to] of one model and times them (the block ends with a loss read, i.e. a sync). */
async function runBlock(run: Run, from: number, to: number, timed: boolean): Promise<void> {
  const t0 = performance.now();
  for (let step = from; step <= to; step++) {
    const value = await scope(async () => {
      const ids = batch(step);
      const out = await run.model.forward(ids, { labels: ids });
      // backwardAsync: the CLEX frequencies come from a cpu ODE solve whose gradient is read back.
      await out.loss!.backwardAsync();
      optim.clipGradNorm(run.model.parameters(), 1.0);
      run.opt.step();
      run.sched.step();
      run.opt.zeroGrad();
      return step === to ? out.loss!.item() : NaN;
    });
    if (step === to) run.loss = value;
  }
  // The first block compiles pipelines and fills the buffer pool: leave it out of the timing.
  if (timed) {
    run.ms += performance.now() - t0;
    run.timedSteps += to - from + 1;
  }
}

/**
 * Trains both models in alternating blocks of 25 steps, so that both see the same machine load and the
 * step-time ratio is measured side by side.
 */
async function trainBoth(runs: Run[], first: number): Promise<void> {
  const bar = new Progress(STEPS * runs.length, '  train');
  const BLOCK = 25;
  for (let from = first; from <= STEPS; from += BLOCK) {
    const to = Math.min(from + BLOCK - 1, STEPS);
    for (const run of runs) await runBlock(run, from, to, from > first);
    bar.update(to * runs.length, Object.fromEntries(runs.map((r) => [r.label, r.loss])));
    if (to % SAVE_EVERY === 0 || to === STEPS) await save(runs, to);
  }
}

/** Both checkpoints at the same step (the RNG state saved is the shared global one). */
async function save(runs: Run[], step: number): Promise<void> {
  for (const r of runs) {
    await io.saveCheckpoint(`${OUT_DIR}/${r.label}`, { model: r.model, optimizer: r.opt, scheduler: r.sched, step, config: r.model.config.toJSON() });
  }
}

/** The step to continue from: 1, or one past the saved step of both checkpoints (--resume). */
async function resume(runs: Run[]): Promise<number> {
  if (!RESUME) return 1;
  if (!runs.every((r) => existsSync(`${OUT_DIR}/${r.label}/trainer_state.json`))) {
    console.log(`--resume: no checkpoints in ${OUT_DIR}/{${runs.map((r) => r.label).join(',')}}; starting from step 1`);
    return 1;
  }
  const steps: number[] = [];
  for (const r of runs) steps.push((await io.loadCheckpoint(`${OUT_DIR}/${r.label}`, { model: r.model, optimizer: r.opt, scheduler: r.sched })).step);
  if (new Set(steps).size !== 1) throw new Error(`--resume: the checkpoints are at different steps (${steps.join(', ')}); delete ${OUT_DIR} to start over`);
  console.log(`resumed both models from step ${steps[0]}`);
  return steps[0] + 1;
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
const clexRun = makeRun('clex', clexConfig);
const plainRun = makeRun('rope', baseConfig);
await trainBoth([clexRun, plainRun], await resume([clexRun, plainRun]));
clexRun.opt.dispose();
plainRun.opt.dispose();
const msClex = clexRun.ms / Math.max(clexRun.timedSteps, 1), msPlain = plainRun.ms / Math.max(plainRun.timedSteps, 1);
console.log(`\ncheckpoints: ${OUT_DIR}/clex and ${OUT_DIR}/rope (model.safetensors, optimizer.safetensors, config.json, trainer_state.json)`);
console.log(`loss on the last training batch (CLEX: at that batch's sampled t): CLEX ${clexRun.loss.toFixed(3)}, plain RoPE ${plainRun.loss.toFixed(3)}`);
if (clexRun.timedSteps > 0) console.log(`step time (batch ${BATCH}×${L0}, alternating blocks of 25 steps, first block untimed): plain RoPE ${msPlain.toFixed(1)} ms, CLEX ${msClex.toFixed(1)} ms (CLEX/plain = ${(msClex / msPlain).toFixed(2)})`);
else console.log('step time: n/a (use more than 25 steps)');

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
console.log(`\nCLEX sample (${prompt.length + 160} chars, crossing t = 1 → 2 → 3; the KV cache is refilled at each step up):\n${tokenizer.decode(sample[0])}`);
const mem = memory();
console.log(`\n${mem.dispatches} dispatches in ${mem.submits} submits, ${mem.readbacks} readbacks; peak ${(mem.peakBytes / 2 ** 20).toFixed(1)} MiB`);
process.exit(0);
