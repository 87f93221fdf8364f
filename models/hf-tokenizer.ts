// Hugging Face tokenizers (a tokenizer.json and, when present, tokenizer_config.json) through
// @huggingface/tokenizers, a pure-JS implementation of the same pipeline (normalizer, pre-tokenizer,
// BPE / WordPiece / Unigram model, post-processor, decoder). `Tokenizer.fromFile` is the entry point.
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Tokenizer as HFTokenizerImpl } from '@huggingface/tokenizers';
import { OpError } from '../core/shape.js';
import type { Tokenizer as TokenizerInterface } from './tokenizer.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** End-of-sequence spellings of common families, tried when tokenizer_config.json names none. */
const EOS_SPELLINGS = ['</s>', '<|endoftext|>', '<|end_of_text|>', '<eos>', '<|im_end|>'];

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (e.g. LLaMA's BOS), as transformers' tokenizer(text) does (default false: raw text). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, padding) from the text (default false: every id is shown). */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

/** A tokenizer.json tokenizer (BPE, WordPiece, Unigram…) behind the framework's Tokenizer interface. */
export class HFTokenizer implements TokenizerInterface {
  readonly vocabSize: number;
  readonly eosTokenId?: number;
  readonly bosTokenId?: number;
  readonly padTokenId?: number;
  readonly unkTokenId?: number;
  private readonly impl: HFTokenizerImpl;

  /** From the parsed tokenizer.json (and tokenizer_config.json); `source` names them in errors. */
  constructor(
    readonly tokenizerJson: Json,
    readonly tokenizerConfig: Json = {},
    source = 'tokenizer.json',
  ) {
    if (
      typeof tokenizerJson !== 'object' ||
      tokenizerJson === null ||
      typeof (tokenizerJson as { model?: unknown }).model !== 'object'
    ) {
      throw new OpError('HFTokenizer', `${source} is not a Hugging Face tokenizer.json (it has no "model" object)`);
    }
    try {
      this.impl = new HFTokenizerImpl(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new OpError('HFTokenizer', `cannot build the tokenizer from ${source}: ${(e as Error).message}`);
    }
    const vocab = this.impl.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const idOf = (v: unknown) => {
      const s = tokenContent(v);
      return s === undefined ? undefined : this.impl.token_to_id(s);
    };
    const special = [...this.impl.get_added_tokens_decoder().values()].filter((t) => t.special).map((t) => t.content);
    this.eosTokenId = idOf(tokenizerConfig.eos_token) ?? idOf(EOS_SPELLINGS.find((s) => special.includes(s)));
    this.bosTokenId = idOf(tokenizerConfig.bos_token);
    this.padTokenId = idOf(tokenizerConfig.pad_token);
    this.unkTokenId = idOf(tokenizerConfig.unk_token) ?? idOf((tokenizerJson.model as Json).unk_token);
  }

  /** Token ids of `text` (no special tokens unless asked). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new OpError('HFTokenizer.encode', `text must be a string, got ${typeof text}`);
    return this.impl.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false }).ids;
  }

  /** The text of `ids`; every id must be in [0, vocabSize). */
  decode(ids: Iterable<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids);
    const bad = list.find(
      (id) => !Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.impl.id_to_token(id) === undefined,
    );
    if (bad !== undefined)
      throw new OpError('HFTokenizer.decode', `id ${bad} is not in the vocabulary (size ${this.vocabSize})`);
    if (list.length === 0) return ''; // the library rejects an empty list
    // transformers' space clean-up (" ," → ",") only when tokenizer_config.json asks for it, so that
    // decode(encode(text)) gives the text back otherwise (the library alone would default to cleaning).
    const cleanUp = this.tokenizerConfig.clean_up_tokenization_spaces === true;
    return this.impl.decode(list, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: cleanUp,
    });
  }

  /** The token strings of `text` (for inspection). */
  tokenize(text: string): string[] {
    return this.impl.tokenize(text);
  }

  /** The id of a token string (undefined when it is not in the vocabulary). */
  tokenToId(token: string): number | undefined {
    return this.impl.token_to_id(token);
  }

  /** The files savePretrained writes: tokenizer.json and tokenizer_config.json as loaded. */
  hfFiles(): Record<string, string> {
    const files: Record<string, string> = { [TOKENIZER_FILE]: JSON.stringify(this.tokenizerJson) };
    if (Object.keys(this.tokenizerConfig).length)
      files[TOKENIZER_CONFIG_FILE] = JSON.stringify(this.tokenizerConfig, null, 2) + '\n';
    return files;
  }

  /** Loads a tokenizer.json, or the tokenizer.json (+ tokenizer_config.json) of a folder. */
  static async fromFile(path: string): Promise<HFTokenizer> {
    if (typeof path !== 'string' || !path)
      throw new OpError(
        'Tokenizer.fromFile',
        `path must name a tokenizer.json or a folder holding one, got ${JSON.stringify(path)}`,
      );
    const info = await stat(path).catch(() => null);
    if (!info)
      throw new OpError(
        'Tokenizer.fromFile',
        `${path} does not exist (give a tokenizer.json or a Hugging Face model folder)`,
      );
    const file = info.isDirectory() ? join(path, TOKENIZER_FILE) : path;
    const json = await readJson(
      file,
      info.isDirectory()
        ? `${path} has no ${TOKENIZER_FILE} (only tokenizer.json tokenizers are supported, not tokenizer.model / vocab files alone)`
        : undefined,
    );
    // tokenizer_config.json sits next to tokenizer.json in HF folders; it is optional.
    const configPath = join(info.isDirectory() ? path : dirname(path), TOKENIZER_CONFIG_FILE);
    const config = basename(file) === TOKENIZER_CONFIG_FILE ? {} : await readJson(configPath, null);
    return new HFTokenizer(json as Json, (config ?? {}) as Json, file);
  }
}

/** Parsed JSON of `path`; when absent, throws `missing` (or returns null when `missing` is null). */
async function readJson(path: string, missing: string | null | undefined): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    if (missing === null) return null;
    throw new OpError('Tokenizer.fromFile', missing ?? `cannot read ${path}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new OpError('Tokenizer.fromFile', `${path} is not valid JSON (${(e as Error).message})`);
  }
}

/** The framework's tokenizer interface (see tokenizer.ts); the value holds the factories. */
export type Tokenizer = TokenizerInterface;
export const Tokenizer = {
  /** A Hugging Face tokenizer from a tokenizer.json file or a folder holding one. */
  fromFile: (path: string): Promise<HFTokenizer> => HFTokenizer.fromFile(path),
  /** A Hugging Face tokenizer from parsed tokenizer.json (and tokenizer_config.json) objects. */
  fromJSON: (tokenizerJson: Json, tokenizerConfig: Json = {}): HFTokenizer =>
    new HFTokenizer(tokenizerJson, tokenizerConfig, 'the given tokenizer JSON'),
};
