// The passkey data builder (training rows and held-out contexts), the main job's calibration message
// and its verdict's targets.
import { describe, expect, it } from 'vitest';
import { getDefaultDevice, manualSeed, models, noGrad, seededUniform, setDefaultDevice } from '../index.js';
import { buildModel } from '../examples/lib/checkpoint.js';
import { trainingBatch } from '../examples/lib/data.js';
import {
  PASSKEY_KEY,
  PASSKEY_QUESTION,
  passkeyCode,
  passkeyContext,
  passkeyOverhead,
  passkeyTrainingRows,
} from '../examples/lib/passkey.js';
import type { Results } from '../examples/lib/report.js';
import { batchLoss } from '../examples/lib/trainer.js';
import { clexTargets, passkeyCalibration, ROW, verdict } from '../examples/lib/verdict.js';

const tokenizer = new models.ByteTokenizer();
const filler = Int32Array.from(
  tokenizer.encode('The dog by the mill would not move, so Orin waited 2 days. '.repeat(40)),
);
const decode = (ids: ArrayLike<number>) => tokenizer.decode(Array.from(ids));

/** Where the key's code and the question's answer sit in a decoded context. */
function locate(text: string): { key: number; question: number; code: string; answer: string } {
  const key = text.indexOf(' key=');
  const question = text.lastIndexOf(PASSKEY_QUESTION);
  return { key, question, code: text.slice(key + 5, key + 6), answer: text.slice(question + PASSKEY_QUESTION.length) };
}

describe('passkey contexts', () => {
  it('have exactly the asked length, the key at the asked depth and the answer at the end', () => {
    for (const length of [40, 64, 200, 512]) {
      for (const depth of [0, 0.1, 0.5, 0.9, 1]) {
        const c = passkeyContext(tokenizer, filler, { length, depth, code: '4', offset: 13 });
        expect(c.ids).toHaveLength(length);
        const fillerTokens = length - passkeyOverhead(tokenizer);
        expect(c.keyStart).toBe(Math.round(depth * fillerTokens));
        const text = decode(c.ids);
        expect(text.slice(c.keyStart, c.keyStart + PASSKEY_KEY('4').length)).toBe(PASSKEY_KEY('4'));
        expect(text.endsWith(`${PASSKEY_QUESTION}4`)).toBe(true);
        expect(c.answerStart).toBe(length - 1);
        expect(decode(c.answer)).toBe('4');
        // The key is the only digit: the filler's "2" became a space.
        expect(text.replace(/\d/, '').slice(0, -1)).not.toMatch(/\d/);
      }
    }
  });

  it('reject a length that cannot hold the key and the question, and bad depths, with the flag to change', () => {
    const need = passkeyOverhead(tokenizer) + 2;
    expect(() => passkeyContext(tokenizer, filler, { length: need - 1, depth: 0.5, code: '1', offset: 0 })).toThrow(
      /too short .*needs at least \d+.*--seq-len/,
    );
    expect(() => passkeyContext(tokenizer, filler, { length: need, depth: 0.5, code: '1', offset: 0 })).not.toThrow();
    expect(() => passkeyContext(tokenizer, filler, { length: 64, depth: 1.5, code: '1', offset: 0 })).toThrow(
      /depth must be in \[0, 1\]/,
    );
  });

  it('codes are single digits, all ten drawn', () => {
    const next = seededUniform(5);
    const codes = Array.from({ length: 500 }, () => passkeyCode(next));
    expect(codes.every((c) => /^\d$/.test(c))).toBe(true);
    expect(new Set(codes).size).toBe(10);
  });
});

describe('passkey training rows', () => {
  it('every row holds a key and its question inside one L0 window, at depths spread over the window', () => {
    const L0 = 64;
    const { ids: rows, answerLengths } = passkeyTrainingRows(tokenizer, filler, { rows: 200, seqLen: L0, seed: 9 });
    expect(answerLengths.every((A) => A === 1)).toBe(true);
    const gaps: number[] = [];
    for (let r = 0; r < 200; r++) {
      const text = decode(rows.subarray(r * L0, (r + 1) * L0));
      expect(text).toHaveLength(L0);
      const { key, question, code, answer } = locate(text);
      expect(key).toBeGreaterThanOrEqual(0);
      expect(question).toBeGreaterThan(key);
      expect(answer).toBe(code);
      gaps.push(question - key);
    }
    // The key-to-question distance covers the window: from adjacent to nearly L0 apart.
    expect(Math.min(...gaps)).toBeLessThan(20);
    expect(Math.max(...gaps)).toBeGreaterThan(L0 - 20);
  });

  it('are a pure function of the seed, take the first rows of a batch, and only their answers are labelled', async () => {
    const a = passkeyTrainingRows(tokenizer, filler, { rows: 3, seqLen: 64, seed: 4 }).ids;
    expect(Array.from(passkeyTrainingRows(tokenizer, filler, { rows: 3, seqLen: 64, seed: 4 }).ids)).toEqual(
      Array.from(a),
    );
    expect(Array.from(passkeyTrainingRows(tokenizer, filler, { rows: 3, seqLen: 64, seed: 5 }).ids)).not.toEqual(
      Array.from(a),
    );
    const batch = trainingBatch(filler, {
      seed: 1,
      step: 3,
      micro: 0,
      batchSize: 4,
      seqLen: 64,
      passkey: { tokenizer, rows: 2 },
    });
    const ids = await batch.ids.data();
    const rows = [0, 1, 2, 3].map((r) => decode(ids.slice(r * 64, (r + 1) * 64)));
    expect(rows.map((t) => t.includes(PASSKEY_QUESTION))).toEqual([true, true, false, false]);
    expect(batch.passkeyRows).toBe(2);
    const labels = await batch.passkeyLabels!.data();
    for (let r = 0; r < 2; r++) {
      expect(Array.from(labels.slice(r * 64, r * 64 + 63)).every((l) => l === -100)).toBe(true);
      expect(labels[r * 64 + 63]).toBe(ids[r * 64 + 63]);
    }
    const plain = trainingBatch(filler, { seed: 1, step: 3, micro: 0, batchSize: 4, seqLen: 64 });
    expect(plain.passkeyRows).toBe(0);
    expect(plain.passkeyLabels).toBeNull();
    // Without passkey rows, the text rows are those of the same step with them (same draws).
    expect(decode((await plain.ids.data()).slice(0, 64))).not.toContain(PASSKEY_QUESTION);
  });
});

describe('the training loss of a batch with passkey rows', () => {
  it("is the text rows' loss plus --passkey-weight × the answers' mean loss", async () => {
    const previous = getDefaultDevice();
    setDefaultDevice('cpu');
    try {
      manualSeed(3);
      const model = buildModel({
        vocab_size: 256,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 64,
        initializer_range: 1, // large weights: rows get distinct losses, so the two readings below differ
      });
      const batch = trainingBatch(filler, {
        seed: 1,
        step: 0,
        micro: 0,
        batchSize: 4,
        seqLen: 64,
        passkey: { tokenizer, rows: 2 },
      });
      await noGrad(async () => {
        const { logits } = await model.forward(batch.ids);
        const text = await models.shiftedLoss(logits, batch.ids).item();
        const textRowsOnly = await models.shiftedLoss(logits.narrow(0, 2, 2), batch.ids.narrow(0, 2, 2)).item();
        const answers = await models.shiftedLoss(logits.narrow(0, 0, 2), batch.passkeyLabels!).item();
        expect(Math.abs(text - textRowsOnly)).toBeGreaterThan(0.01);
        expect(await (await batchLoss(model, batch)).item()).toBeCloseTo(text + answers, 4);
      });
    } finally {
      setDefaultDevice(previous);
    }
  });
});

/** Results with the main job's row names; `basePasskey` is the base's accuracy at 1×L0 for each depth. */
function fakeResults(basePasskey: number[], ppl: Record<string, number[]>, clexPasskey = [1, 1, 1, 1]): Results {
  const lengths = [64, 128, 256, 512];
  const depths = [0.1, 0.5, 0.9];
  const at = (values: number[]) => Object.fromEntries(lengths.map((L, i) => [L, values[i]]));
  return {
    L0: 64,
    lengths,
    tokens: 4096,
    rows: Object.entries(ppl).map(([name, values]) => ({ name, checkpoint: '', rule: '', ppl: at(values) })),
    passkey: [
      {
        name: ROW.base,
        accuracy: { 64: Object.fromEntries(depths.map((d, i) => [d, basePasskey[i]])), 128: {}, 256: {}, 512: {} },
      },
      {
        name: ROW.clex,
        accuracy: Object.fromEntries(
          lengths.map((L, i) => [L, Object.fromEntries(depths.map((d) => [d, clexPasskey[i]]))]),
        ),
      },
    ],
  };
}

describe('the main job calibration and verdict', () => {
  const ppl = {
    [ROW.base]: [2.0, 3.0, 9.0, 30.0],
    'fine-tuned PI (s = 8)': [2.3, 2.3, 2.4, 2.5],
    [ROW.clex]: [2.02, 2.1, 2.2, 2.6],
    [ROW.clexReset]: [2.02, 2.1, 2.3, 2.7],
    [ROW.clexFrozen]: [2.03, 2.12, 2.25, 2.8],
  };

  it('passes only when the base retrieves ≥ 0.9 at every depth at 1×L0, and says so', () => {
    const ok = passkeyCalibration(fakeResults([1, 0.9, 1], ppl))!;
    expect(ok.passed).toBe(true);
    expect(ok.message).toMatch(/calibration passed/);
    const bad = passkeyCalibration(fakeResults([1, 0.5, 1], ppl))!;
    expect(bad.passed).toBe(false);
    expect(bad.worst).toBe(0.5);
    expect(bad.message).toMatch(
      /passkey results are VOID: the base retrieves only 1\.00 at depth 0\.1, 0\.50 at depth 0\.5, 1\.00 at depth 0\.9 at 1×L0 = 64/,
    );
    expect(bad.message).toMatch(/--base-steps|--passkey-share/);
    expect(passkeyCalibration({ ...fakeResults([1, 1, 1], ppl), passkey: undefined })).toBeNull();
  });

  it('checks each CLEX target against the rows and names every miss', () => {
    const results = fakeResults([1, 1, 1], ppl, [1, 1, 0.75, 0.5]);
    const targets = Object.fromEntries(clexTargets(results).map((t) => [t.what, t.met]));
    expect(targets).toEqual({
      '4×L0 within 10% of 1×': true, // 2.2 / 2.02 = 1.09
      'best or within 1% of the best row at 4×': true,
      'best or within 1% of the best row at 8×': false,
      'in the window within 2% of the base': true,
      'passkey ≥ 0.8 at 4×L0': false,
      'learned ODE better than its ODE-frozen ablation at 4× and 8×': true,
      'learned ODE better than the same weights with the ODE reset at 4× and 8×': true,
    });
    const line = verdict(results);
    expect(line).toMatch(
      /^best at 4×L0: "fine-tuned CLEX, ODE learned" \(2\.20\); best at 8×L0: "fine-tuned PI \(s = 8\)" \(2\.50\)/,
    );
    expect(line).toMatch(/meets 5 of 7 targets/);
    expect(line).toMatch(/best or within 1% of the best row at 8× MISSED \(2\.60 vs best 2\.50\)/);
    expect(line).toMatch(/passkey ≥ 0\.8 at 4×L0 MISSED \(0\.75\)/);
  });
});
