// The built-in corpus, generated deterministically at run time (no downloads): short chronicles of a
// made-up country in plain ASCII English. Each chronicle introduces facts early (where someone lives,
// what they keep, their trade) and asks for them at its end, so that using long context pays off. Passkey
// contexts are not part of the text: the scripts build them from any corpus (examples/lib/passkey.ts).
// The training and held-out parts come from different seeds (different chronicles).
import { seededUniform } from '../../index.js';

export const TRAIN_CHARS = 520_000;
export const HELD_OUT_CHARS = 66_000;

const NAMES = [
  'Orin',
  'Mira',
  'Tobin',
  'Alva',
  'Fenna',
  'Corin',
  'Ilse',
  'Bram',
  'Nella',
  'Osric',
  'Petra',
  'Rune',
  'Sela',
  'Tamsin',
  'Ulf',
  'Vesna',
  'Wren',
  'Yara',
  'Edda',
  'Hale',
  'Jory',
  'Kestrel',
  'Lio',
  'Maren',
  'Nils',
  'Odile',
  'Quill',
  'Rosa',
  'Sten',
  'Thea',
];
const PLACES = [
  'Tamsk',
  'Vell',
  'Harrowgate',
  'Lindmere',
  'Oskby',
  'Bramholt',
  'Corvale',
  'Dunmore',
  'Eastwick',
  'Fallow',
  'Greyhaven',
  'Ivel',
  'Kettering',
  'Marsh End',
  'Northfold',
  'Pellin',
  'Redwater',
  'Saltcombe',
  'Thorne',
  'Wyndham',
];
const TRADES = [
  'baker',
  'smith',
  'weaver',
  'ferryman',
  'clerk',
  'miller',
  'potter',
  'fisher',
  'carpenter',
  'healer',
  'mason',
  'shepherd',
  'brewer',
  'tailor',
  'lamplighter',
];
const COLOURS = ['green', 'blue', 'red', 'grey', 'yellow', 'white', 'black', 'brown', 'silver', 'amber'];
const THINGS = [
  'kettle',
  'lantern',
  'ledger',
  'knife',
  'basket',
  'compass',
  'fiddle',
  'cloak',
  'hammer',
  'map',
  'bell',
  'key',
  'jar',
  'rope',
  'boat',
];
const ANIMALS = ['dog', 'goat', 'heron', 'cat', 'horse', 'crow', 'fox', 'hen', 'ox', 'owl'];
const LANDMARKS = ['bridge', 'mill', 'harbour', 'chapel', 'market', 'well', 'gate', 'orchard', 'tower', 'inn'];
const WEATHER = [
  'rain came in from the sea',
  'the wind turned cold',
  'fog lay on the river',
  'the sun stayed out until late',
  'snow fell on the hills',
  'a storm broke over the roofs',
];
const TIMES = [
  'In the morning',
  'At noon',
  'Late in the day',
  'That evening',
  'Before dawn',
  'After supper',
  'On market day',
  'Some days later',
];

type Pick = <T>(list: readonly T[]) => T;

const article = (word: string): string => (/^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`);

/** Three people with different names. */
function makeCast(pick: Pick): Person[] {
  const cast: Person[] = [];
  while (cast.length < 3) {
    const name = pick(NAMES);
    if (!cast.some((p) => p.name === name))
      cast.push({ name, home: pick(PLACES), trade: pick(TRADES), thing: pick(THINGS), colour: pick(COLOURS) });
  }
  return cast;
}

interface Person {
  name: string;
  home: string;
  trade: string;
  thing: string;
  colour: string;
}

/** One narrative sentence about the cast (the filler between facts and questions). */
function sentence(pick: Pick, cast: Person[]): string {
  const i = Math.floor(pick([0, 1, 2]));
  const p = cast[i],
    q = cast[(i + 1 + Math.floor(pick([0, 1]))) % 3];
  const templates = [
    () => `${pick(TIMES)}, ${p.name} walked to the ${pick(LANDMARKS)} with ${article(pick(COLOURS))} ${pick(THINGS)}.`,
    () => `The ${pick(ANIMALS)} by the ${pick(LANDMARKS)} would not move, so ${p.name} waited.`,
    () => `${pick(TIMES)} ${pick(WEATHER)}, and ${p.name} stayed inside.`,
    () => `${p.name} met ${q.name} near the ${pick(LANDMARKS)} and they spoke about ${pick(PLACES)}.`,
    () => `${p.name} sold ${article(pick(THINGS))} to a stranger from ${pick(PLACES)}.`,
    () => `Nobody in ${pick(PLACES)} had seen ${article(pick(ANIMALS))} that ${pick(COLOURS)} before.`,
    () => `${q.name} said the road to ${pick(PLACES)} was long, and ${p.name} agreed.`,
    () =>
      `${pick(TIMES)}, the ${p.trade} counted ${pick(['two', 'three', 'five', 'seven', 'nine', 'twelve'])} coins and put them away.`,
    () => `${p.name} mended the ${pick(THINGS)} of ${q.name} by the light of the ${pick(LANDMARKS)}.`,
    () => `A letter came from ${pick(PLACES)} for ${p.name}, but it said very little.`,
  ];
  return pick(templates)();
}

/** One chronicle: facts first, filler, then questions about the facts. */
function chronicle(pick: Pick, uniform: () => number, index: number): string {
  const cast = makeCast(pick);
  const lines: string[] = [`Chronicle ${index + 1}.`];
  for (const p of cast)
    lines.push(
      `${p.name} lives in ${p.home}. ${p.name} is ${article(p.trade)} and keeps ${article(p.colour)} ${p.thing}.`,
    );
  const filler = (chars: number): string => sentences(pick, cast, chars);
  lines.push(filler(100 + uniform() * 1200));
  for (const p of cast) {
    lines.push(
      pick([
        `Where does ${p.name} live? ${p.name} lives in ${p.home}.`,
        `What does ${p.name} keep? ${p.name} keeps ${article(p.colour)} ${p.thing}.`,
        `What is the trade of ${p.name}? ${p.name} is ${article(p.trade)}.`,
      ]),
    );
  }
  return lines.join('\n');
}

/** Chronicles from `seed` until at least `chars` characters. */
export function generateChronicles(seed: number, chars: number): string {
  const uniform = seededUniform(seed);
  const pick: Pick = (list) => list[Math.floor(uniform() * list.length)];
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < chars; i++) {
    const c = chronicle(pick, uniform, i);
    parts.push(c);
    n += c.length + 2;
  }
  return parts.join('\n\n');
}

/** Narrative sentences about `cast` until at least `chars` characters. */
function sentences(pick: Pick, cast: ReturnType<typeof makeCast>, chars: number): string {
  const out: string[] = [];
  let n = 0;
  while (n < chars) {
    const s = sentence(pick, cast);
    out.push(s);
    n += s.length + 1;
  }
  return out.join(' ');
}

let memo: { train: string; heldOut: string } | null = null;

/** The built-in corpus: ≥ 520 KB for training and ≥ 66 KB held out, the same on every run. */
export function builtinCorpus(): { train: string; heldOut: string } {
  memo ??= { train: generateChronicles(20260101, TRAIN_CHARS), heldOut: generateChronicles(77, HELD_OUT_CHARS) };
  return memo;
}
