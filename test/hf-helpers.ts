// A small byte-level BPE tokenizer.json written by the tests themselves (GPT-2 style: every byte is a
// printable base token, then a few merges), so the HF tokenizer path is tested without downloads.

/** GPT-2's reversible byte → printable character map: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards. */
export function byteAlphabet(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : next++));
}

/** Merges in priority order; each makes the token left+right. */
export const MERGES: [string, string][] = [
  ['Ġ', 't'],
  ['t', 'h'],
  ['Ġt', 'h'],
  ['th', 'e'],
  ['Ġth', 'e'],
  ['l', 'l'],
  ['e', 'll'],
  ['h', 'ell'],
  ['hell', 'o'],
];

/** tokenizer.json: byte-level pre-tokenizer and decoder, BPE over the byte alphabet + MERGES, and an EOS special token. */
export function smallBpeTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (const ch of byteAlphabet()) vocab[ch] = Object.keys(vocab).length;
  for (const [a, b] of MERGES) vocab[a + b] = Object.keys(vocab).length;
  const eosId = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = eosId;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: eosId,
        content: '<|endoftext|>',
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
}
