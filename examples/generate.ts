// npm run generate -- DIR --prompt "..." [flags]: streams a continuation from a checkpoint written by
// the train script (LLaMA or GPT-NeoX, any positional rule), with a KV cache. A CLEX model keeps going
// past its training length L0 (t = ceil(L/L0) steps up as the text grows, up to max_factor·L0).
import { getDefaultDevice, setDefaultDevice } from '../index.js';
import { loadModel } from './lib/checkpoint.js';
import { choiceFlag, numberFlag, parseFlags, runScript, UsageError, type FlagSpecs } from './lib/cli.js';

const FLAGS = {
  prompt: { type: 'string', arg: 'TEXT', help: 'the text to continue (required)' },
  'max-new-tokens': { type: 'string', default: '200', arg: 'N', help: 'tokens to generate' },
  temperature: { type: 'string', default: '0.8', arg: 'T', help: 'sampling temperature (0 = greedy)' },
  'top-k': { type: 'string', default: '20', arg: 'K', help: 'sample among the K most likely tokens (0 = off)' },
  'top-p': {
    type: 'string',
    default: '1',
    arg: 'P',
    help: 'nucleus sampling: the smallest set with probability ≥ P (1 = off)',
  },
  seed: { type: 'string', default: '1', arg: 'N', help: 'sampler seed' },
  device: { type: 'string', arg: 'webgpu|cpu', help: 'where to run (default: webgpu, or $DAWNGRAD_DEVICE)' },
} satisfies FlagSpecs;

runScript(async () => {
  const { values: v, positionals } = parseFlags(
    'generate',
    'npm run generate -- DIR --prompt "..." [flags]',
    FLAGS,
    process.argv.slice(2),
    { positionals: true },
  );
  if (positionals.length !== 1)
    throw new UsageError(
      `generate: give exactly one checkpoint folder (got ${positionals.length ? positionals.join(' ') : 'none'}), e.g. npm run generate -- out/train --prompt "The keeper"`,
    );
  if (v.prompt === undefined || v.prompt === '')
    throw new UsageError('generate: --prompt is required and must not be empty');
  setDefaultDevice(
    v.device === undefined ? getDefaultDevice() : choiceFlag('device', v.device, ['webgpu', 'cpu'] as const),
  );
  const maxNew = numberFlag('max-new-tokens', v['max-new-tokens'], { integer: true, min: 0 });
  const sampling = {
    temperature: numberFlag('temperature', v.temperature, { min: 0 }),
    topK: numberFlag('top-k', v['top-k'], { integer: true, min: 0 }),
    topP: numberFlag('top-p', v['top-p'], { above: 0, max: 1 }),
    seed: numberFlag('seed', v.seed, { integer: true, min: 0 }),
  };
  const { model, info, tokenizer } = await loadModel('generate', positionals[0]);
  const prompt = tokenizer.encode(v.prompt);
  const rs = info.config.rope_scaling;
  const L0 = info.config.max_position_embeddings ?? 0;
  const limit = rs?.type === 'clex' ? (rs.max_factor ?? 1) * L0 : Infinity;
  if (prompt.length >= limit)
    throw new UsageError(
      `--prompt has ${prompt.length} tokens; this CLEX model handles at most ${limit} (max_factor·L0)`,
    );
  const budget = Math.min(maxNew, limit - prompt.length);
  console.error(
    `checkpoint step ${info.step}: ${info.config.model_type}, rope ${rs?.type ?? 'none'}, L0 = ${L0}; ${budget} new tokens (temperature ${sampling.temperature}, top-k ${sampling.topK}, top-p ${sampling.topP}, seed ${sampling.seed})`,
  );
  // Streaming: decode everything generated so far and print what is new; a byte tokenizer may end
  // mid-character (U+FFFD at the end), which is printed once the character is complete.
  const generated: number[] = [];
  let printed = 0;
  process.stdout.write(v.prompt);
  const t0 = performance.now();
  await model.generate(prompt, {
    maxNewTokens: budget,
    ...sampling,
    eosTokenId: tokenizer.eosTokenId,
    onToken: ([token]) => {
      generated.push(token);
      const text = tokenizer.decode(generated);
      const ready = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
      if (ready.length > printed) {
        process.stdout.write(ready.slice(printed));
        printed = ready.length;
      }
    },
  });
  const rest = tokenizer.decode(generated).slice(printed);
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${rest}\n`);
  console.error(
    `${generated.length} tokens in ${seconds.toFixed(2)} s (${(generated.length / seconds).toFixed(1)} tokens/s)`,
  );
  model.dispose();
});
