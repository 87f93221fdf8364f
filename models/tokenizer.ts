// Tokenizers the models, scripts and checkpoints use, behind one interface: a character-level one over
// printable ASCII (small vocabulary, lossy outside it) and a byte-level one (256 ids, lossless on any
// UTF-8 text).
import { OpError } from '../core/shape.js';
import { argString } from '../core/args.js';

/** What the models, scripts and checkpoints need of a tokenizer. */
export interface Tokenizer {
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: Iterable<number>): string;
  /** End-of-sequence id, when the tokenizer has one. */
  readonly eosTokenId?: number;
}

function checkId(op: string, id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
    throw new OpError(op, `id ${id} is outside the vocabulary [0, ${vocabSize})`);
}

/**
 * A character-level tokenizer over printable ASCII: id 0 is '\n', ids 1..95 are ' '..'~'. Other
 * characters map to '?' (encode) so any text can be fed; the vocabulary size is fixed at 96.
 */
export class CharTokenizer implements Tokenizer {
  readonly vocabSize = 96;
  private static readonly UNKNOWN = '?'.charCodeAt(0) - 31;

  /** Token id of one character ('?' for characters outside the vocabulary). */
  idOf(ch: string): number {
    if (ch === '\n') return 0;
    const c = ch.charCodeAt(0);
    return c >= 32 && c <= 126 ? c - 31 : CharTokenizer.UNKNOWN;
  }

  encode(text: string): number[] {
    argString('CharTokenizer.encode', 'text', text);
    return Array.from(text, (ch) => this.idOf(ch));
  }

  decode(ids: Iterable<number>): string {
    let s = '';
    for (const id of ids) {
      checkId('CharTokenizer.decode', id, this.vocabSize);
      s += id === 0 ? '\n' : String.fromCharCode(id + 31);
    }
    return s;
  }
}

/**
 * A byte-level tokenizer: the ids are the text's UTF-8 bytes, so encode/decode round-trips any string
 * that is valid Unicode. Decoding bytes that are not valid UTF-8 (a model may emit them) gives U+FFFD.
 */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder('utf-8');

  encode(text: string): number[] {
    return Array.from(this.encoder.encode(text));
  }

  decode(ids: Iterable<number>): string {
    const bytes: number[] = [];
    for (const id of ids) {
      checkId('ByteTokenizer.decode', id, this.vocabSize);
      bytes.push(id);
    }
    return this.decoder.decode(Uint8Array.from(bytes));
  }
}
