// Samples text from the checkpoint that examples/train-clex.ts saved (out/train-clex/clex), with a KV cache.
// A CLEX model keeps going past its training length L0: t = ceil(L/L0) steps up as the text grows
// (the cache is refilled at each step up, so decoding matches a full forward).
//
// Usage: npx tsx examples/generate.ts ["prompt"] [newTokens=300] [temperature=0.8] [topK=20] [seed=1]
import { readFile } from 'node:fs/promises';
import { io, models } from '../index.js';

const DIR = process.env.CHECKPOINT ?? 'out/train-clex/clex';
const prompt = process.argv[2] ?? 'The keeper ';
const maxNewTokens = Number(process.argv[3] ?? 300);
const temperature = Number(process.argv[4] ?? 0.8);
const topK = Number(process.argv[5] ?? 20);
const seed = Number(process.argv[6] ?? 1);

let configJson: string;
try {
  configJson = await readFile(`${DIR}/${io.CONFIG_FILE}`, 'utf8');
} catch {
  console.error(`no checkpoint in ${DIR}/: run \`npx tsx examples/train-clex.ts\` first`);
  process.exit(1);
}
const config = new models.LlamaConfig(JSON.parse(configJson) as models.LlamaConfigInput);
const model = new models.LlamaForCausalLM(config);
const ck = await io.loadCheckpoint(DIR, { model, restoreRng: false });
const tokenizer = new models.CharTokenizer();
const L0 = config.max_position_embeddings;
const limit = config.rope_scaling?.type === 'clex' ? config.rope_scaling.max_factor * L0 : Infinity;
const budget = Math.min(maxNewTokens, limit - prompt.length);
console.log(`checkpoint step ${ck.step}; rope ${config.rope_scaling?.type ?? 'none'}; L0 = ${L0}; generating ${budget} characters (temperature ${temperature}, top-k ${topK}, seed ${seed})\n`);
const t0 = performance.now();
const [out] = await model.generate(tokenizer.encode(prompt), { maxNewTokens: budget, temperature, topK, seed });
const ms = performance.now() - t0;
console.log(tokenizer.decode(out));
console.log(`\n${budget} tokens in ${(ms / 1000).toFixed(2)} s (${((budget / ms) * 1000).toFixed(1)} tokens/s)`);
process.exit(0);
