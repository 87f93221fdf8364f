// The built-in corpus (examples/data/corpus.txt, original prose written for this project): the first
// paragraphs are for training, the last ones are held out for evaluation.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Corpus {
  train: string;
  heldOut: string;
}

/** Splits at a paragraph boundary so that about `heldOutFraction` of the characters are held out. */
export function loadCorpus(heldOutFraction = 0.2): Corpus {
  const text = readFileSync(fileURLToPath(new URL('./corpus.txt', import.meta.url)), 'utf8');
  const paragraphs = text.trim().split(/\n\s*\n/);
  let held = 0;
  let cut = paragraphs.length;
  while (cut > 1 && held < heldOutFraction * text.length) held += paragraphs[--cut].length;
  return { train: paragraphs.slice(0, cut).join('\n\n'), heldOut: paragraphs.slice(cut).join('\n\n') };
}
