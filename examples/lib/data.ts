// Text sources for the scripts (--data builtin | prose | FILE | FOLDER, --val / --val-fraction), the
// tokenizer choice (--tokenizer char | byte) and its description in checkpoints, and the training
// batches (a pure function of the seed and the step, so a resumed run sees the same batches).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { models, seededUniform, tensor, type Tensor } from '../../index.js';
import { builtinCorpus } from '../data/builtin-corpus.js';
import { UsageError } from './cli.js';
import { passkeyTrainingRows } from './passkey.js';

export interface TextSplit {
  train: string;
  val: string;
  /** Where it came from, for logs and checkpoints. */
  source: string;
}

const PROSE_FILE = fileURLToPath(new URL('../data/corpus.txt', import.meta.url));

/** A UTF-8 text file, or the .txt files of a folder (sorted by name, joined by blank lines). */
export function readTextSource(flag: string, path: string): string {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new UsageError(
      `--${flag} ${path}: no such file or folder (give a UTF-8 text file, a folder of .txt files, or 'builtin')`,
    );
  }
  const files = stat.isDirectory()
    ? readdirSync(path)
        .filter((f) => f.endsWith('.txt'))
        .sort()
        .map((f) => join(path, f))
    : [path];
  if (files.length === 0) throw new UsageError(`--${flag} ${path}: the folder holds no .txt files`);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const texts = files.map((file) => {
    try {
      return decoder.decode(readFileSync(file));
    } catch {
      throw new UsageError(`--${flag} ${file}: not valid UTF-8 text`);
    }
  });
  const text = texts.join('\n\n');
  if (text.trim().length === 0) throw new UsageError(`--${flag} ${path}: the text is empty`);
  return text;
}

/**
 * Splits off the last `fraction` of the text for validation, at a line break near the cut when there
 * is one (so that no line is split between the two parts).
 */
export function splitTail(text: string, fraction: number): { train: string; val: string } {
  let cut = Math.floor(text.length * (1 - fraction));
  const newline = text.lastIndexOf('\n', cut);
  if (newline > 0 && cut - newline < 2000) cut = newline + 1;
  return { train: text.slice(0, cut), val: text.slice(cut) };
}

/** --data / --val / --val-fraction → training and validation text. */
export function loadText(opts: { data: string; val?: string; valFraction: number }): TextSplit {
  const val = opts.val !== undefined ? readTextSource('val', opts.val) : undefined;
  if (opts.data === 'builtin') {
    const c = builtinCorpus();
    return { train: c.train, val: val ?? c.heldOut, source: 'builtin' };
  }
  const text = opts.data === 'prose' ? readFileSync(PROSE_FILE, 'utf8') : readTextSource('data', opts.data);
  if (val !== undefined) return { train: text, val, source: opts.data };
  const split = splitTail(text, opts.valFraction);
  if (split.val.trim().length === 0)
    throw new UsageError(
      `--data ${opts.data}: the text is too short to hold out --val-fraction ${opts.valFraction} of it; give --val PATH or more text`,
    );
  return { ...split, source: opts.data };
}

export const TOKENIZERS = ['char', 'byte'] as const;
export type TokenizerKind = (typeof TOKENIZERS)[number] | 'hf';
/**
 * How a checkpoint records its tokenizer (trainer_state.json extra.tokenizer): a built-in kind, or a
 * Hugging Face tokenizer.json stored next to the checkpoint (`file`, relative to its folder).
 */
export interface TokenizerDescription {
  type: TokenizerKind;
  file?: string;
}

/** The tokenizer a description names; `dir` is the checkpoint folder an 'hf' file is relative to. */
export async function makeTokenizer(d: TokenizerDescription, dir = '.'): Promise<models.Tokenizer> {
  if (d.type === 'char') return new models.CharTokenizer();
  if (d.type === 'byte') return new models.ByteTokenizer();
  return models.Tokenizer.fromFile(join(dir, d.file ?? 'tokenizer.json'));
}

/** --tokenizer char|byte|PATH (a tokenizer.json, or a folder holding one). */
export function tokenizerFromFlag(value: string): { description: TokenizerDescription; path?: string } {
  if ((TOKENIZERS as readonly string[]).includes(value)) return { description: { type: value as TokenizerKind } };
  const path = statSync(value, { throwIfNoEntry: false })?.isDirectory() ? join(value, 'tokenizer.json') : value;
  if (!existsSync(path))
    throw new UsageError(
      `--tokenizer ${value}: not 'char' or 'byte', and no tokenizer.json there; give one of char, byte, or a path to a tokenizer.json (or a folder holding one)`,
    );
  return { description: { type: 'hf', file: 'tokenizer.json' }, path };
}

export function checkTokenizerDescription(where: string, d: unknown): TokenizerDescription {
  const type = (d as TokenizerDescription | undefined)?.type;
  if (![...TOKENIZERS, 'hf'].includes(type as string))
    throw new UsageError(
      `${where}: unknown tokenizer description ${JSON.stringify(d)} (expected type char, byte or hf)`,
    );
  return d as TokenizerDescription;
}

/** One micro-batch: token ids, and the labels that score its passkey rows' answers on their own. */
export interface TrainingBatch {
  ids: Tensor;
  /** Rows 0..passkeyRows−1 are passkey contexts. */
  passkeyRows: number;
  /** [passkeyRows, L] labels of the passkey rows: −100 everywhere but the answer; null without passkey rows. */
  passkeyLabels: Tensor | null;
}

/**
 * Step `step`'s batch: rows start at positions drawn from (seed, step, micro-batch); the first
 * `passkey.rows` rows are passkey contexts instead (examples/lib/passkey.ts), built from the same text.
 */
export function trainingBatch(
  ids: Int32Array,
  opts: {
    seed: number;
    step: number;
    micro: number;
    batchSize: number;
    seqLen: number;
    passkey?: { tokenizer: models.Tokenizer; rows: number };
  },
): TrainingBatch {
  const batchSeed = ((opts.seed * 1_000_003) ^ (opts.step * 7919 + opts.micro * 104_729)) >>> 0;
  const next = seededUniform(batchSeed);
  const L = opts.seqLen;
  const rows = new Int32Array(opts.batchSize * L);
  const passkeyRows = opts.passkey ? Math.min(opts.passkey.rows, opts.batchSize) : 0;
  let passkeyLabels: Tensor | null = null;
  if (opts.passkey && passkeyRows > 0) {
    const built = passkeyTrainingRows(opts.passkey.tokenizer, ids, {
      rows: passkeyRows,
      seqLen: L,
      seed: batchSeed ^ 0x5a5a5a5a,
    });
    rows.set(built.ids);
    const labels = new Int32Array(passkeyRows * L).fill(models.IGNORE_INDEX);
    built.answerLengths.forEach((A, r) =>
      labels.set(built.ids.subarray((r + 1) * L - A, (r + 1) * L), (r + 1) * L - A),
    );
    passkeyLabels = tensor(labels, { dtype: 'int32', shape: [passkeyRows, L] });
  }
  for (let b = passkeyRows; b < opts.batchSize; b++) {
    const start = Math.floor(next() * (ids.length - L + 1));
    rows.set(ids.subarray(start, start + L), b * L);
  }
  return { ids: tensor(rows, { dtype: 'int32', shape: [opts.batchSize, L] }), passkeyRows, passkeyLabels };
}
