// The dawngrad side of `npm run parity` (see scripts/parity.sh and examples/hf_parity.py):
//   npx tsx examples/hf-parity.ts [ROOT=out/parity]
// For every folder transformers saved in ROOT/hf/<case> (config.json, safetensors — sharded for NeoX —
// in float32, bfloat16 or float16, tokenizer.json): models.fromPretrained on the float64 cpu backend,
// logits compared with transformers' (max |Δ| ≤ 1e-4), token ids compared with transformers' fast
// tokenizer; then savePretrained (with the tokenizer) into ROOT/ours/<case> with our logits and ids, for
// `python3 examples/hf_parity.py check ROOT` to load back with from_pretrained.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { models, noGrad, scope, tensor } from '../index.js';

const ROOT = process.argv[2] ?? 'out/parity';
const TOL = 1e-4;
const hfRoot = `${ROOT}/hf`;
if (!existsSync(hfRoot)) {
  console.error(
    `hf-parity: ${hfRoot} does not exist; run 'python3 examples/hf_parity.py make ${ROOT}' first (npm run parity does both)`,
  );
  process.exit(2);
}
let failures = 0;
for (const name of readdirSync(hfRoot).sort()) {
  const dir = `${hfRoot}/${name}`;
  await scope(async () => {
    const ref = JSON.parse(readFileSync(`${dir}/parity.json`, 'utf8')) as {
      ids: number[][];
      logits: number[];
      shape: number[];
    };
    const refIds = JSON.parse(readFileSync(`${dir}/token_ids.json`, 'utf8')) as Record<string, number[]>;
    const model = await models.fromPretrained(dir, { device: 'cpu', dtype: 'float64' });
    const tok = await models.Tokenizer.fromFile(dir);
    const x = tensor(ref.ids.flat(), { dtype: 'int32', device: 'cpu', shape: [ref.ids.length, ref.ids[0].length] });
    const logits = Array.from(await (await noGrad(() => model.forward(x))).logits.data());
    const diff = logits.reduce((m, v, i) => Math.max(m, Math.abs(v - ref.logits[i])), 0);
    const idsEqual = Object.entries(refIds).every(
      ([text, ids]) => JSON.stringify(tok.encode(text)) === JSON.stringify(ids),
    );
    const lossless = Object.keys(refIds).every((text) => tok.decode(tok.encode(text)) === text);
    const ok = diff <= TOL && idsEqual && lossless;
    failures += ok ? 0 : 1;
    console.log(
      `transformers → dawngrad ${name}: max|Δlogits| ${diff.toExponential(2)}; token ids ${idsEqual ? 'equal' : 'DIFFER'}; decode ${lossless ? 'lossless' : 'DIFFERS'} ${ok ? 'ok' : 'FAIL'}`,
    );
    // Back out: the same model and tokenizer as a dawngrad-written folder (float32, small shards).
    const out = `${ROOT}/ours/${name}`;
    await model.savePretrained(out, { tokenizer: tok, maxShardSize: '100KB' });
    writeFileSync(`${out}/parity.json`, JSON.stringify({ ids: ref.ids, logits, shape: ref.shape }));
    writeFileSync(
      `${out}/token_ids.json`,
      JSON.stringify(Object.fromEntries(Object.keys(refIds).map((t) => [t, tok.encode(t)]))),
    );
    model.dispose();
  });
}
process.exit(failures ? 1 : 0);
