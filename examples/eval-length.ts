// npm run eval-length -- DIR [DIR ...] [flags]: held-out perplexity of checkpoints at several lengths
// (all on the same held-out tokens), optionally under training-free rope rules and with a passkey
// test; prints a markdown table and writes results.json, chart.svg and chart.png. `--help` for flags.
import { mkdirSync } from 'node:fs';
import { basename } from 'node:path';
import { getDefaultDevice, setDefaultDevice } from '../index.js';
import { readCheckpointInfo } from './lib/checkpoint.js';
import { choiceFlag, listFlag, numberFlag, parseFlags, runScript, UsageError, type FlagSpecs } from './lib/cli.js';
import { loadText } from './lib/data.js';
import { evaluateCheckpoints, RULES, type Rule } from './lib/evaluate.js';
import { markdownTable, passkeyTable, writeChart, writeResults } from './lib/report.js';
import { checkPrecision, PRECISIONS } from './lib/precision.js';

const FLAGS = {
  data: {
    type: 'string',
    default: 'builtin',
    arg: 'builtin|prose|PATH',
    help: 'text whose held-out part is scored (as in train)',
  },
  val: { type: 'string', arg: 'PATH', help: 'held-out text to score (default: the held-out part of --data)' },
  'val-fraction': {
    type: 'string',
    default: '0.1',
    arg: 'F',
    help: 'fraction of --data that is held out (from the end)',
  },
  lengths: {
    type: 'string',
    arg: 'L,L,...',
    help: 'evaluation lengths (default 1, 2, 4, 8 × L0 of the first checkpoint)',
  },
  rules: {
    type: 'string',
    arg: RULES.join(','),
    help: 'also evaluate each checkpoint under these training-free rules at s = L/L0',
  },
  'clex-reset-ode': {
    type: 'boolean',
    help: 'also evaluate CLEX checkpoints with the ODE reset to W_down = 0 (the learned part removed)',
  },
  'max-tokens': {
    type: 'string',
    default: '32768',
    arg: 'N',
    help: 'held-out token budget (rounded down to a multiple of the longest length)',
  },
  passkey: { type: 'boolean', help: 'passkey retrieval accuracy by length and depth' },
  'passkey-samples': { type: 'string', default: '8', arg: 'N', help: 'passkey contexts per (length, depth)' },
  names: { type: 'string', arg: 'A,B,...', help: 'row labels, one per checkpoint (default: folder name and rope)' },
  device: { type: 'string', arg: 'webgpu|cpu', help: 'where to evaluate (default: webgpu, or $DAWNGRAD_DEVICE)' },
  precision: {
    type: 'string',
    default: 'f32',
    arg: PRECISIONS.join('|'),
    help: "'f16-mixed': the forwards in float16 (autocast); needs the adapter's shader-f16 on webgpu",
  },
  out: { type: 'string', default: 'out/eval', arg: 'DIR', help: 'where results.json, chart.svg and chart.png go' },
} satisfies FlagSpecs;

runScript(async () => {
  const { values: v, positionals: dirs } = parseFlags(
    'eval-length',
    'npm run eval-length -- DIR [DIR ...] [flags]',
    FLAGS,
    process.argv.slice(2),
    { positionals: true },
  );
  if (dirs.length === 0)
    throw new UsageError(
      'eval-length: give at least one checkpoint folder (written by npm run train), e.g. npm run eval-length -- out/train',
    );
  const device =
    v.device === undefined ? getDefaultDevice() : choiceFlag('device', v.device, ['webgpu', 'cpu'] as const);
  setDefaultDevice(device);
  const precision = choiceFlag('precision', v.precision, PRECISIONS);
  checkPrecision(precision, device);
  const lengths =
    v.lengths === undefined
      ? undefined
      : listFlag('lengths', v.lengths, (s) => numberFlag('lengths', s, { integer: true, min: 2 })).sort(
          (a, b) => a - b,
        );
  const rules = v.rules === undefined ? [] : listFlag('rules', v.rules, (s) => choiceFlag('rules', s, RULES) as Rule);
  const names = v.names === undefined ? null : listFlag('names', v.names, (s) => s);
  if (names && names.length !== dirs.length)
    throw new UsageError(`--names has ${names.length} labels for ${dirs.length} checkpoints`);
  const infos = await Promise.all(dirs.map((d) => readCheckpointInfo('eval-length', d)));
  const text = loadText({
    data: v.data ?? 'builtin',
    val: v.val,
    valFraction: numberFlag('val-fraction', v['val-fraction'], { above: 0, max: 0.9 }),
  });
  const passkeySamples = v.passkey ? numberFlag('passkey-samples', v['passkey-samples'], { integer: true, min: 1 }) : 0;
  const targets = infos.map((info, i) => ({
    dir: info.dir,
    name: names?.[i] ?? `${basename(info.dir)} (${info.config.rope_scaling?.type ?? 'plain RoPE'})`,
    rules,
    resetOde: v['clex-reset-ode'] && info.config.rope_scaling?.type === 'clex',
  }));
  const results = await evaluateCheckpoints(targets, {
    heldOutText: text.val,
    lengths,
    maxTokens: numberFlag('max-tokens', v['max-tokens'], { integer: true, min: 1 }),
    passkeySamples,
    precision,
    log: console.log,
  });
  const out = v.out ?? 'out/eval';
  mkdirSync(out, { recursive: true });
  console.log(
    `\nheld-out perplexity by evaluation length (L0 = ${results.L0}; ${results.tokens} held-out tokens of ${text.source} at every length):\n`,
  );
  console.log(markdownTable(results));
  if (passkeySamples > 0) console.log(`\n${passkeyTable(results)}`);
  const chart = await writeChart(
    out,
    results,
    `held-out perplexity${passkeySamples > 0 ? ' and passkey retrieval' : ''} vs length (${basename(text.source)})`,
  );
  console.log(`\nwrote ${writeResults(out, results)}, ${chart.svg}, ${chart.png}`);
});
