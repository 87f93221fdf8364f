// Passkey retrieval, built the same way for training and for evaluation on any corpus: a window of
// the text with " key=N. " inserted at a chosen depth and " key? key=N" at its end, N one digit and
// the only digit in the context (the filler's digits become spaces). The question repeats the key's
// words, as in the usual passkey test of long-context models. Why one digit: reading back a
// multi-digit code is a copy that needs induction heads, and the main job's model does not form them
// within its budget (docs/main-job-study.md); finding the one digit anywhere in the context, and
// attending to it across distances never seen in training, is what length extrapolation is about.
// Training rows (a share of each batch, --passkey-share) are L0 tokens long, so every key and its
// question fit in one training window; evaluation contexts are 1–8×L0 long, so the distance between
// them grows with the length.
import { models, noGrad, scope, seededUniform, tensor } from '../../index.js';
import { UsageError } from './cli.js';

export const PASSKEY_KEY = (code: string): string => ` key=${code}. `;
export const PASSKEY_QUESTION = ' key? key=';
/** Depths (fraction of the filler before the key) that the evaluation tests. */
export const PASSKEY_DEPTHS = [0.1, 0.5, 0.9];

/** The passkey: one digit, from `next` (uniform in [0, 1)). Chance is 0.1. */
export const passkeyCode = (next: () => number): string => String(Math.floor(next() * 10));

/** Token ids that spell a digit: taken out of the filler, so the key is the only digit in its context. */
function digitTokens(tokenizer: models.Tokenizer): Set<number> {
  return new Set([...'0123456789'].flatMap((d) => tokenizer.encode(d)));
}

/** One passkey context: its tokens and where the answer (the code's tokens, at the very end) starts. */
export interface PasskeyContext {
  ids: number[];
  /** Index of the answer's first token in ids. */
  answerStart: number;
  answer: number[];
  /** Index of the key's first token in ids. */
  keyStart: number;
}

/** Tokens a context of `code` needs besides filler. */
export function passkeyOverhead(tokenizer: models.Tokenizer, code = '0'): number {
  return (
    tokenizer.encode(PASSKEY_KEY(code)).length +
    tokenizer.encode(PASSKEY_QUESTION).length +
    tokenizer.encode(code).length
  );
}

/**
 * A context of exactly `length` tokens: filler (read from `filler` at `offset`, wrapping; digits become
 * spaces) with the key
 * after round(depth · fillerTokens) filler tokens, then the question and the answer. Throws when
 * `length` cannot hold the key, the question and two filler tokens.
 */
export function passkeyContext(
  tokenizer: models.Tokenizer,
  filler: ArrayLike<number>,
  opts: { length: number; depth: number; code: string; offset: number },
): PasskeyContext {
  const key = tokenizer.encode(PASSKEY_KEY(opts.code));
  const question = tokenizer.encode(PASSKEY_QUESTION);
  const answer = tokenizer.encode(opts.code);
  const fillerTokens = opts.length - key.length - question.length - answer.length;
  if (fillerTokens < 2)
    throw new UsageError(
      `passkey: a context of ${opts.length} tokens is too short for the key and its question (needs at least ${opts.length - fillerTokens + 2}); raise --seq-len`,
    );
  if (!(opts.depth >= 0 && opts.depth <= 1))
    throw new UsageError(`passkey: depth must be in [0, 1], got ${opts.depth}`);
  if (filler.length < 1) throw new UsageError('passkey: the filler text is empty');
  const digits = digitTokens(tokenizer);
  const space = tokenizer.encode(' ')[0];
  const f = Array.from({ length: fillerTokens }, (_, i) => filler[(opts.offset + i) % filler.length]).map((t) =>
    digits.has(t) ? space : t,
  );
  const before = Math.round(fillerTokens * opts.depth);
  const ids = [...f.slice(0, before), ...key, ...f.slice(before), ...question, ...answer];
  return { ids, answerStart: opts.length - answer.length, answer, keyStart: before };
}

/**
 * The training rows of one batch that are passkey contexts: L0 tokens each, depth and code drawn from
 * `seed`, filler from the training text; `answerLengths[r]` is the number of answer tokens ending row r.
 * A pure function of its arguments, so a resumed run sees the same rows.
 */
export function passkeyTrainingRows(
  tokenizer: models.Tokenizer,
  ids: ArrayLike<number>,
  opts: { rows: number; seqLen: number; seed: number },
): { ids: Int32Array; answerLengths: number[] } {
  const next = seededUniform(opts.seed >>> 0);
  const out = new Int32Array(opts.rows * opts.seqLen);
  const answerLengths: number[] = [];
  for (let r = 0; r < opts.rows; r++) {
    const context = passkeyContext(tokenizer, ids, {
      length: opts.seqLen,
      depth: next(),
      code: passkeyCode(next),
      offset: Math.floor(next() * ids.length),
    });
    out.set(context.ids, r * opts.seqLen);
    answerLengths.push(context.answer.length);
  }
  return { ids: out, answerLengths };
}

/**
 * Retrieval accuracy at one (length, depth): `samples` held-out contexts, scored teacher-forced; a
 * sample counts when the model's top prediction is right for every token of the code.
 */
export async function passkeyAccuracy(
  model: models.CausalLM,
  tokenizer: models.Tokenizer,
  heldOut: ArrayLike<number>,
  length: number,
  depth: number,
  samples: number,
): Promise<number> {
  const next = seededUniform((length * 7919 + Math.round(depth * 1000) * 104_729 + 17) >>> 0);
  const contexts = Array.from({ length: samples }, () =>
    passkeyContext(tokenizer, heldOut, {
      length,
      depth,
      code: passkeyCode(next),
      offset: Math.floor(next() * heldOut.length),
    }),
  );
  model.eval();
  return noGrad(() =>
    scope(async () => {
      const ids = tensor(
        contexts.flatMap((c) => c.ids),
        { dtype: 'int32', shape: [samples, length] },
      );
      const { logits } = await model.forward(ids);
      // Predictions of the answer's tokens come from the positions just before them (answers may differ
      // in length under a subword tokenizer: read the last K predictions and align each at the end).
      const K = Math.max(...contexts.map((c) => c.answer.length));
      const guess = await logits
        .narrow(1, length - K - 1, K)
        .argmax(2)
        .data();
      let ok = 0;
      contexts.forEach((c, s) => {
        const skip = K - c.answer.length;
        if (c.answer.every((t, i) => guess[s * K + skip + i] === t)) ok++;
      });
      return ok / samples;
    }),
  );
}
