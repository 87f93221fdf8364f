// The decoder rows of `npm run bench`: dawngrad's training step vs the same step in TF.js (tokens/s,
// dispatches / submits / readbacks per step), CLEX vs plain RoPE on dawngrad, and the step in f16-mixed
// precision vs float32 (time and peak GPU bytes).
import type * as TF from '@tensorflow/tfjs-core';
import { manualSeed } from '../index.js';
import { PRECISIONS } from '../examples/lib/precision.js';
import {
  DawngradDecoder,
  describeShape,
  stepPeakBytes,
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

export interface PrecisionRow {
  kind: 'f16-vs-f32';
  name: string;
  shape: DecoderShape;
  parameters: number;
  f32: StepTiming & { peakBytes: number };
  f16: StepTiming & { peakBytes: number };
  /** f16-mixed ms/step ÷ f32 ms/step. */
  timeRatio: number;
  /** f16-mixed peak bytes ÷ f32 peak bytes (the acceptance asks ≤ 0.6 at ~20M parameters). */
  memoryRatio: number;
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

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export function formatPrecisionRow(r: PrecisionRow): string {
  return (
    `${r.name.padEnd(34)} f32 ${fmt(r.f32.msPerStep, 2).padStart(8)} ms  f16-mixed ${fmt(r.f16.msPerStep, 2).padStart(8)} ms   time ×${r.timeRatio.toFixed(2)}\n` +
    `${''.padEnd(34)} ${r.parameters} parameters; peak GPU memory of a step: f32 ${mib(r.f32.peakBytes)}, f16-mixed ${mib(r.f16.peakBytes)}   memory ×${r.memoryRatio.toFixed(2)}`
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

/**
 * The plain-RoPE step in f16-mixed precision vs float32: step times interleaved, and the peak live GPU
 * bytes of one step of each, measured with only that trainer alive.
 */
export async function precisionRow(shape: DecoderShape, blocks: number): Promise<PrecisionRow> {
  const peaks: number[] = [];
  let parameters = 0;
  for (const precision of PRECISIONS) {
    manualSeed(0);
    const m = await stepPeakBytes(shape, 'plain', precision);
    peaks.push(m.peakBytes);
    parameters = m.parameters;
  }
  const trainers = PRECISIONS.map((precision) => {
    manualSeed(0);
    return new DawngradDecoder(shape, 'plain', precision);
  });
  try {
    const [f32, f16] = await timeTrainingInterleaved(trainers, shape, blocks);
    return {
      kind: 'f16-vs-f32',
      name: `f16-mixed vs f32 ${describeShape(shape)}`,
      shape,
      parameters,
      f32: { ...f32, peakBytes: peaks[0] },
      f16: { ...f16, peakBytes: peaks[1] },
      timeRatio: f16.msPerStep / f32.msPerStep,
      memoryRatio: peaks[1] / peaks[0],
    };
  } finally {
    trainers.forEach((t) => t.dispose());
  }
}
