// The main job (`npm start`): the CLEX paper's recipe in miniature.
//   1. Pretrain a base model with plain RoPE at L0.
//   2. From that base, continue training for the same number of steps with CLEX (and, as an ablation,
//      CLEX with its ODE frozen at init), PI and YaRN at the largest evaluated factor, and plain RoPE
//      (the control: the same extra steps, no scaling).
//   3. Evaluate the base (plain, and training-free NTK / YaRN / dynamic NTK / CLEX at init) and every
//      fine-tune at 1×–8× L0 (the CLEX fine-tune also with its ODE reset to W_down = 0), print the table
//      and the passkey table, write results.json and the chart, and say in one line what it shows.
// Each stage checkpoints into --out/<stage> and a re-run continues where it stopped (same flags).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { getDefaultDevice } from '../index.js';
import { choiceFlag, numberFlag, parseFlags, runScript, type FlagSpecs } from './lib/cli.js';
import { loadText } from './lib/data.js';
import { evaluateCheckpoints, type EvalTarget } from './lib/evaluate.js';
import { markdownTable, passkeyTable, writeChart, writeResults, type Results } from './lib/report.js';
import { train, type TrainOptions } from './lib/trainer.js';

const FLAGS = {
  quick: { type: 'boolean', help: 'a one-minute version (fewer steps, fewer held-out tokens)' },
  data: { type: 'string', default: 'builtin', arg: 'builtin|prose|PATH', help: 'the text (a UTF-8 file or a folder of .txt files; 10% held out from the end)' },
  model: { type: 'string', default: 'llama', arg: 'llama|neox', help: 'decoder architecture' },
  layers: { type: 'string', default: '2', arg: 'N', help: 'decoder layers' },
  hidden: { type: 'string', default: '64', arg: 'N', help: 'hidden size' },
  heads: { type: 'string', default: '4', arg: 'N', help: 'attention heads' },
  'seq-len': { type: 'string', default: '64', arg: 'L0', help: 'training length L0 (evaluated at 1, 2, 4, 8 × L0)' },
  'base-steps': { type: 'string', arg: 'N', help: 'pretraining steps (default 600; --quick 40)' },
  'finetune-steps': { type: 'string', arg: 'N', help: 'continued-training steps of each fine-tune (default 200; --quick 10)' },
  'max-tokens': { type: 'string', arg: 'N', help: 'held-out tokens scored at every length (default 8192; --quick 512)' },
  'passkey-samples': { type: 'string', arg: 'N', help: 'passkey contexts per (length, depth); 0 = no passkey test (default 8; --quick 2)' },
  device: { type: 'string', arg: 'webgpu|cpu', help: 'default: webgpu, or $DAWNGRAD_DEVICE' },
  out: { type: 'string', arg: 'DIR', help: 'checkpoints and results (default out/main, --quick out/main-quick)' },
} satisfies FlagSpecs;

const LARGEST_FACTOR = 8;

function summary(r: Results): string {
  const LENGTHS = r.lengths;
  const at = (name: string, L: number) => r.rows.find((row) => row.name === name)?.ppl[L] ?? NaN;
  const best = (L: number) => r.rows.reduce((a, b) => (b.ppl[L] < a.ppl[L] ? b : a));
  const [L1, , L4, L8] = LENGTHS;
  const clex = 'fine-tuned CLEX, ODE learned';
  const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${(((a - b) / b) * 100).toFixed(1)}%`;
  return `In one line: best at 4×L0 is "${best(L4).name}" (${best(L4).ppl[L4].toFixed(2)}), best at 8×L0 is "${best(L8).name}" (${best(L8).ppl[L8].toFixed(2)}); `
    + `CLEX with its learned ODE degrades ${(at(clex, L4) / at(clex, L1)).toFixed(2)}× from 1× to 4× (plain RoPE base: ${(at('base, plain RoPE', L4) / at('base, plain RoPE', L1)).toFixed(2)}×), is ${pct(at(clex, L1), at('base, plain RoPE', L1))} vs the base in the window, `
    + `and at 8× is ${pct(at(clex, L8), at('fine-tuned CLEX, ODE frozen at init', L8))} vs its ODE-frozen ablation and ${pct(at(clex, L8), at(`${clex}, ODE reset to W_down = 0`, L8))} vs the same weights with the ODE reset.`;
}

runScript(async () => {
  const { values: v } = parseFlags('main', 'npm start -- [--quick] [--data PATH] [--model neox] [flags]', FLAGS, process.argv.slice(2));
  const quick = v.quick;
  const baseSteps = numberFlag('base-steps', v['base-steps'] ?? (quick ? '40' : '600'), { integer: true, min: 1 });
  const finetuneSteps = numberFlag('finetune-steps', v['finetune-steps'] ?? (quick ? '10' : '200'), { integer: true, min: 1 });
  const L0 = numberFlag('seq-len', v['seq-len'], { integer: true, min: 8 });
  const LENGTHS = [1, 2, 4, LARGEST_FACTOR].map((k) => k * L0);
  const maxTokens = numberFlag('max-tokens', v['max-tokens'] ?? (quick ? '512' : '8192'), { integer: true, min: LENGTHS[3] });
  const passkeySamples = numberFlag('passkey-samples', v['passkey-samples'] ?? (quick ? '2' : '8'), { integer: true, min: 0 });
  const out = v.out ?? (quick ? 'out/main-quick' : 'out/main');
  const data = v.data ?? 'builtin';
  const common: TrainOptions = {
    model: choiceFlag('model', v.model, ['llama', 'neox'] as const),
    layers: numberFlag('layers', v.layers, { integer: true, min: 1 }), hidden: numberFlag('hidden', v.hidden, { integer: true, min: 1 }), heads: numberFlag('heads', v.heads, { integer: true, min: 1 }),
    rope: 'none', ropeFactor: LARGEST_FACTOR, maxFactor: LARGEST_FACTOR, clexMethod: 'dopri5', clexGradient: 'backprop', clexFreezeOde: false,
    data, valFraction: 0.1, tokenizer: 'byte', seqLen: L0, batchSize: 8, gradAccum: 1,
    steps: baseSteps, lr: 3e-3, minLr: 3e-4, warmup: quick ? 5 : 30, weightDecay: 0.01, clip: 1, seed: 1234,
    device: v.device === undefined ? getDefaultDevice() : choiceFlag('device', v.device, ['webgpu', 'cpu'] as const),
    out: join(out, 'base'), saveEvery: 100, evalEvery: 0, logEvery: 10, evalTokens: 8192, resume: 'auto', label: 'base',
  };
  const text = loadText({ data, valFraction: 0.1 }); // checked up front: a bad --data fails before any training
  const started = performance.now();
  console.log(`main job: ${common.model} ${common.layers} layers × ${common.hidden} (${common.heads} heads of ${common.hidden / common.heads}), byte tokenizer, L0 = ${L0}, data ${data}; base ${baseSteps} steps, each fine-tune ${finetuneSteps} steps; device ${common.device}; checkpoints in ${out}/`);
  const stages: [string, Partial<TrainOptions>][] = [
    ['base', {}],
    ['clex', { rope: 'clex' }],
    ['clex-frozen', { rope: 'clex', clexFreezeOde: true }],
    ['pi', { rope: 'linear' }],
    ['yarn', { rope: 'yarn' }],
    ['plain', { rope: 'none' }],
  ];
  const timings: string[] = [];
  for (const [name, change] of stages) {
    const t0 = performance.now();
    const fineTune = name !== 'base';
    const result = await train({
      ...common, ...change, out: join(out, name), label: name,
      ...(fineTune ? { initFrom: join(out, 'base'), steps: finetuneSteps, lr: 1e-3, minLr: 1e-4, warmup: quick ? 2 : 10, tokenizer: undefined, seqLen: undefined } : {}),
    });
    if (result.interrupted) process.exit(130);
    timings.push(`${name} ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  console.log(`\nevaluating on ${data} held-out text at ${LENGTHS.join(', ')} tokens:`);
  const base = join(out, 'base');
  const targets: EvalTarget[] = [
    { dir: base, name: 'base, plain RoPE', rules: ['ntk', 'yarn', 'dynamic', 'clex-init'] },
    { dir: join(out, 'plain'), name: 'fine-tuned plain RoPE (control)' },
    { dir: join(out, 'pi'), name: `fine-tuned PI (s = ${LARGEST_FACTOR})` },
    { dir: join(out, 'yarn'), name: `fine-tuned YaRN (s = ${LARGEST_FACTOR})` },
    { dir: join(out, 'clex'), name: 'fine-tuned CLEX, ODE learned', resetOde: true },
    { dir: join(out, 'clex-frozen'), name: 'fine-tuned CLEX, ODE frozen at init' },
  ];
  const t0 = performance.now();
  const results = await evaluateCheckpoints(targets, { heldOutText: text.val, lengths: LENGTHS, maxTokens, passkeySamples, log: console.log });
  timings.push(`evaluation ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  // Rename the base's rule rows to read as in the paper's tables.
  for (const row of results.rows) row.name = row.name.replace('base, plain RoPE + ', 'base + ');
  results.passkey?.forEach((p) => { p.name = p.name.replace('base, plain RoPE + ', 'base + '); });
  mkdirSync(out, { recursive: true });
  console.log(`\nheld-out perplexity (${results.tokens} tokens of ${data} at every length; L0 = ${L0}):\n`);
  console.log(markdownTable(results));
  if (passkeySamples > 0) console.log(`\n${passkeyTable(results)}`);
  const chart = await writeChart(out, results, `held-out perplexity vs length: ${common.model}, L0 = ${L0}, ${data}`);
  console.log(`\n${summary(results)}`);
  console.log(`\nwrote ${writeResults(out, results)}, ${chart.svg}, ${chart.png}`);
  console.log(`time: ${timings.join(', ')}; total ${((performance.now() - started) / 1000).toFixed(0)} s`);
});
