// A character-level tokenizer over printable ASCII: id 0 is '\n', ids 1..95 are ' '..'~'. Other
// characters map to '?' (encode) so any text can be fed; the vocabulary size is fixed at 96.
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
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new OpError('CharTokenizer.decode', `id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
      s += id === 0 ? '\n' : String.fromCharCode(id + 31);
    }
    return s;
  }
}
