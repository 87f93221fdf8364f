// npm run train -- [flags]: trains (or fine-tunes, --init-from) a LLaMA or GPT-NeoX model on the
// built-in corpus, the bundled prose or your text. `--help` lists the flags.
import { getDefaultDevice } from '../index.js';
import { choiceFlag, numberFlag, parseFlags, runScript, type FlagSpecs } from './lib/cli.js';
import { TOKENIZERS } from './lib/data.js';
import { F16_MIXED_HELP, PRECISIONS } from './lib/precision.js';
import { ROPES, TRAIN_POSITIONS, TRAIN_POSITIONS_HELP, train, type TrainOptions } from './lib/trainer.js';

const TRAIN_FLAGS = {
  model: { type: 'string', default: 'llama', arg: 'llama|neox', help: 'decoder architecture' },
  layers: { type: 'string', default: '2', arg: 'N', help: 'decoder layers' },
  hidden: { type: 'string', default: '64', arg: 'N', help: 'hidden size' },
  heads: { type: 'string', default: '4', arg: 'N', help: 'attention heads' },
  'kv-heads': { type: 'string', arg: 'N', help: 'key/value heads (LLaMA grouped-query attention; default: --heads)' },
  intermediate: { type: 'string', arg: 'N', help: 'MLP width (default: LLaMA ≈ 8/3·hidden, NeoX 4·hidden)' },
  config: {
    type: 'string',
    arg: 'FILE.json',
    help: 'model sizes from an HF config.json (HF field names; overrides the size flags)',
  },
  rope: { type: 'string', default: 'none', arg: ROPES.join('|'), help: 'positional scaling rule (none = plain RoPE)' },
  'rope-factor': {
    type: 'string',
    default: '8',
    arg: 'S',
    help: `scale of the rules other than clex (${ROPES.filter((r) => r !== 'none' && r !== 'clex').join(', ')}; linear = PI)`,
  },
  'max-factor': { type: 'string', default: '8', arg: 'N', help: 'CLEX: the largest t (contexts up to N·L0)' },
  'clex-method': { type: 'string', default: 'dopri5', arg: 'dopri5|rk4', help: 'CLEX: ODE solver' },
  'clex-gradient': { type: 'string', default: 'backprop', arg: 'backprop|adjoint', help: 'CLEX: ODE gradient' },
  'clex-freeze-ode': { type: 'boolean', help: 'CLEX: keep the ODE weights at their init (left out of the optimizer)' },
  'clex-t1-share': {
    type: 'string',
    arg: 'F',
    help: 'CLEX: probability of t = 1 in training draws (default: t uniform over 1..max_factor)',
  },
  'clex-ode-lr-scale': {
    type: 'string',
    default: '1',
    arg: 'X',
    help: "CLEX: multiplier of the ODE weights' own rate (lr / (d·(max_factor − 1)))",
  },
  'train-positions': {
    type: 'string',
    default: 'standard',
    arg: TRAIN_POSITIONS.join('|'),
    help: TRAIN_POSITIONS_HELP,
  },
  data: {
    type: 'string',
    default: 'builtin',
    arg: 'builtin|prose|PATH',
    help: 'training text: the built-in corpus, the bundled prose, a UTF-8 file or a folder of .txt files',
  },
  val: {
    type: 'string',
    arg: 'PATH',
    help: 'held-out text (default: the built-in held-out part, or the end of --data)',
  },
  'val-fraction': { type: 'string', default: '0.1', arg: 'F', help: 'fraction of --data held out, taken from the end' },
  tokenizer: {
    type: 'string',
    arg: `${TOKENIZERS.join('|')}|PATH`,
    help: "'byte' (UTF-8 bytes, lossless; the default), 'char' (printable ASCII), or a Hugging Face tokenizer.json (or a folder holding one); --init-from uses the source's",
  },
  'seq-len': { type: 'string', arg: 'L0', help: "training length L0 (default 64; --init-from: the source's)" },
  'batch-size': { type: 'string', default: '8', arg: 'N', help: 'sequences per micro-batch' },
  'grad-accum': { type: 'string', default: '1', arg: 'N', help: 'micro-batches per optimizer step' },
  'passkey-share': {
    type: 'string',
    default: '0',
    arg: 'F',
    help: 'share of each batch that is passkey contexts (a key and its question inside one L0 window, filler from --data)',
  },
  steps: { type: 'string', default: '300', arg: 'N', help: 'optimizer steps' },
  lr: { type: 'string', default: '3e-3', arg: 'X', help: 'peak learning rate' },
  'min-lr': { type: 'string', default: '3e-4', arg: 'X', help: 'learning rate at the end of the cosine decay' },
  warmup: { type: 'string', default: '20', arg: 'N', help: 'linear warm-up steps' },
  'weight-decay': {
    type: 'string',
    default: '0.01',
    arg: 'X',
    help: 'AdamW decay on weight matrices and embeddings (never on biases, norm weights or the CLEX ODE)',
  },
  clip: { type: 'string', default: '1', arg: 'X', help: 'gradient-norm clipping (0 = off)' },
  seed: { type: 'string', default: '1234', arg: 'N', help: 'seed of the initial weights and the batch order' },
  precision: {
    type: 'string',
    default: 'f32',
    arg: PRECISIONS.join('|'),
    help: F16_MIXED_HELP,
  },
  device: { type: 'string', arg: 'webgpu|cpu', help: 'where to train (default: webgpu, or $DAWNGRAD_DEVICE)' },
  out: { type: 'string', default: 'out/train', arg: 'DIR', help: 'checkpoint and metrics folder' },
  'save-every': {
    type: 'string',
    default: '100',
    arg: 'N',
    help: 'checkpoint every N steps (and at the end, and on Ctrl-C)',
  },
  'eval-every': { type: 'string', default: '100', arg: 'N', help: 'held-out perplexity every N steps (0 = never)' },
  'log-every': { type: 'string', default: '10', arg: 'N', help: 'a metrics.jsonl line every N steps' },
  'eval-tokens': { type: 'string', default: '16384', arg: 'N', help: 'held-out tokens per evaluation' },
  resume: {
    type: 'boolean',
    help: 'continue the checkpoint in --out (same flags; a larger --steps extends the run, its schedule recomputed from the new total)',
  },
  'export-hf': {
    type: 'string',
    arg: 'DIR',
    help: 'at the end, also save the model as a Hugging Face folder (config.json, model.safetensors, tokenizer files)',
  },
  'init-from': {
    type: 'string',
    arg: 'DIR',
    help: "start from another checkpoint's weights (its sizes and tokenizer; the --rope may differ)",
  },
} satisfies FlagSpecs;

const USAGE = 'npm run train -- [flags]   (or: npx tsx examples/train.ts [flags])';

/** Flags → TrainOptions, every value checked (errors name the flag). */
function trainOptionsFromArgs(argv: string[]): TrainOptions {
  const { values: v } = parseFlags('train', USAGE, TRAIN_FLAGS, argv);
  const int = (name: keyof typeof TRAIN_FLAGS, min = 1) => numberFlag(name, v[name] as string, { integer: true, min });
  const optionalInt = (name: keyof typeof TRAIN_FLAGS) => (v[name] === undefined ? undefined : int(name));
  const lr = numberFlag('lr', v.lr, { above: 0 });
  return {
    model: choiceFlag('model', v.model, ['llama', 'neox'] as const),
    layers: int('layers'),
    hidden: int('hidden'),
    heads: int('heads'),
    kvHeads: optionalInt('kv-heads'),
    intermediate: optionalInt('intermediate'),
    configFile: v.config,
    rope: choiceFlag('rope', v.rope, ROPES),
    ropeFactor: numberFlag('rope-factor', v['rope-factor'], { min: 1 }),
    maxFactor: int('max-factor'),
    clexMethod: choiceFlag('clex-method', v['clex-method'], ['dopri5', 'rk4'] as const),
    clexGradient: choiceFlag('clex-gradient', v['clex-gradient'], ['backprop', 'adjoint'] as const),
    clexFreezeOde: v['clex-freeze-ode'],
    clexT1Share:
      v['clex-t1-share'] === undefined
        ? undefined
        : numberFlag('clex-t1-share', v['clex-t1-share'], { min: 0, max: 1 }),
    clexOdeLrScale: numberFlag('clex-ode-lr-scale', v['clex-ode-lr-scale'], { min: 0 }),
    trainPositions: choiceFlag('train-positions', v['train-positions'], TRAIN_POSITIONS),
    data: v.data ?? 'builtin',
    val: v.val,
    valFraction: numberFlag('val-fraction', v['val-fraction'], { above: 0, max: 0.9 }),
    tokenizer: v.tokenizer,
    seqLen: v['seq-len'] === undefined ? undefined : numberFlag('seq-len', v['seq-len'], { integer: true, min: 2 }),
    batchSize: int('batch-size'),
    gradAccum: int('grad-accum'),
    steps: int('steps'),
    passkeyShare: numberFlag('passkey-share', v['passkey-share'], { min: 0, max: 1 }),
    lr,
    minLr: numberFlag('min-lr', v['min-lr'], { min: 0, max: lr }),
    warmup: int('warmup', 0),
    weightDecay: numberFlag('weight-decay', v['weight-decay'], { min: 0 }),
    clip: numberFlag('clip', v.clip, { min: 0 }),
    seed: int('seed', 0),
    precision: choiceFlag('precision', v.precision, PRECISIONS),
    device: v.device === undefined ? getDefaultDevice() : choiceFlag('device', v.device, ['webgpu', 'cpu'] as const),
    out: v.out ?? 'out/train',
    saveEvery: int('save-every'),
    evalEvery: int('eval-every', 0),
    logEvery: int('log-every'),
    evalTokens: int('eval-tokens'),
    resume: v.resume,
    initFrom: v['init-from'],
    exportHf: v['export-hf'],
  };
}

runScript(async () => {
  const result = await train(trainOptionsFromArgs(process.argv.slice(2)));
  if (result.interrupted) process.exit(130);
  console.log(
    `done: step ${result.step}, last loss ${result.finalLoss.toFixed(4)}, ${result.msPerStep.toFixed(0)} ms/step; checkpoint and metrics.jsonl in ${result.out}`,
  );
});
