// The decoder rows of `npm run bench`: dawngrad's training step vs the same step in TF.js (tokens/s,
// dispatches / submits / readbacks per step), and CLEX vs plain RoPE on dawngrad.
import type * as TF from '@tensorflow/tfjs-core';
import { manualSeed } from '../index.js';
import {
  DawngradDecoder,
  describeShape,
  timeTrainingInterleaved,
  type DecoderShape,
  type StepTiming,
} from './decoder.js';
import { TfjsDecoder } from './decoder-tfjs.js';

export interface DecoderRow {
  kind: 'decoder-step';
  name: string;
  shape: DecoderShape;
  parameters: number;
  ours: StepTiming;
  tfjs: Omit<StepTiming, 'traffic'>;
  /** ours tokens/s ÷ TF.js tokens/s. */
  speedup: number;
}

export interface ClexRow {
  kind: 'clex-vs-plain';
  name: string;
  shape: DecoderShape;
  plain: StepTiming;
  clex: StepTiming;
  /** clex ms/step ÷ plain ms/step. */
  ratio: number;
  extraDispatchesPerStep: number;
}

const fmt = (x: number, digits = 1) => x.toFixed(digits);
const traffic = (t: StepTiming) =>
  `${fmt(t.traffic.dispatches)} dispatches, ${fmt(t.traffic.submits, 2)} submits, ${fmt(t.traffic.readbacks, 2)} readbacks per step`;

export function formatDecoderRow(r: DecoderRow): string {
  return (
    `${r.name.padEnd(34)} dawngrad ${fmt(r.ours.msPerStep, 2).padStart(8)} ms   tfjs ${fmt(r.tfjs.msPerStep, 2).padStart(8)} ms   speedup ×${r.speedup.toFixed(2)}\n` +
    `${''.padEnd(34)} ${r.parameters} parameters; tokens/s dawngrad ${fmt(r.ours.tokensPerSecond, 0)}, tfjs ${fmt(r.tfjs.tokensPerSecond, 0)}; dawngrad ${traffic(r.ours)}`
  );
}

export function formatClexRow(r: ClexRow): string {
  return (
    `${r.name.padEnd(34)} plain    ${fmt(r.plain.msPerStep, 2).padStart(8)} ms   clex ${fmt(r.clex.msPerStep, 2).padStart(8)} ms   ratio ×${r.ratio.toFixed(2)}   extra dispatches/step ${fmt(r.extraDispatchesPerStep)}\n` +
    `${''.padEnd(34)} plain: ${traffic(r.plain)}\n${''.padEnd(34)} clex:  ${traffic(r.clex)}`
  );
}

/** dawngrad's plain-RoPE step vs the TF.js step, both starting from the same weights. */
export async function decoderRow(tf: typeof TF, shape: DecoderShape, blocks: number): Promise<DecoderRow> {
  manualSeed(0);
  const ours = new DawngradDecoder(shape, 'plain');
  const theirs = await TfjsDecoder.fromDawngrad(tf, ours);
  try {
    if (theirs.numParameters !== ours.numParameters)
      throw new Error(
        `bench: the TF.js decoder has ${theirs.numParameters} parameters, dawngrad's ${ours.numParameters}`,
      );
    const [oursTiming, { msPerStep, tokensPerSecond }] = await timeTrainingInterleaved([ours, theirs], shape, blocks);
    return {
      kind: 'decoder-step',
      name: `decoder step ${describeShape(shape)}`,
      shape,
      parameters: ours.numParameters,
      ours: oursTiming,
      tfjs: { msPerStep, tokensPerSecond },
      speedup: oursTiming.tokensPerSecond / tokensPerSecond,
    };
  } finally {
    ours.dispose();
    theirs.dispose();
  }
}

/** The same dawngrad step with CLEX (as the main job fine-tunes it) and with plain RoPE. */
export async function clexRow(shape: DecoderShape, blocks: number): Promise<ClexRow> {
  const trainers = (['plain', 'clex'] as const).map((rope) => {
    manualSeed(0);
    return new DawngradDecoder(shape, rope);
  });
  try {
    const [plain, clex] = await timeTrainingInterleaved(trainers, shape, blocks);
    return {
      kind: 'clex-vs-plain',
      name: `CLEX vs plain ${describeShape(shape)}`,
      shape,
      plain,
      clex,
      ratio: clex.msPerStep / plain.msPerStep,
      extraDispatchesPerStep: clex.traffic.dispatches - plain.traffic.dispatches,
    };
  } finally {
    trainers.forEach((t) => t.dispose());
  }
}
