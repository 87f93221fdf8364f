// The decoder-step benchmark compares like with like: the TF.js LLaMA declares the same parameters as
// dawngrad's, starts from copies of the same values, and follows the same losses through AdamW steps
// with clipping (so forward, backward, clipping and the update agree, not just the initial loss).
import { describe, expect, it } from 'vitest';
import { manualSeed, memory } from '../index.js';
import {
  DawngradDecoder,
  LARGE_DECODER,
  MAIN_JOB_DECODER,
  timeTraining,
  tokenBatches,
  type DecoderShape,
} from '../bench/decoder.js';
import { TfjsDecoder, tfjsParameterShapes } from '../bench/decoder-tfjs.js';
import { bootTfjs } from '../bench/tfjs.js';

const TINY: DecoderShape = { layers: 2, hidden: 32, heads: 2, batch: 2, seqLen: 16, vocab: 256 };
const parameterCount = (s: DecoderShape) =>
  tfjsParameterShapes(s).reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);

describe('bench: decoder training step', () => {
  it('the TF.js model declares as many parameters as dawngrad builds, at every benchmarked size', () => {
    for (const s of [TINY, MAIN_JOB_DECODER, LARGE_DECODER]) {
      const ours = new DawngradDecoder(s, 'plain');
      expect(parameterCount(s)).toBe(ours.numParameters);
      ours.dispose();
    }
  });

  it('dawngrad and TF.js start from the same loss and stay together for three AdamW steps', async () => {
    const tf = await bootTfjs();
    manualSeed(0);
    const ours = new DawngradDecoder(TINY, 'plain');
    const theirs = await TfjsDecoder.fromDawngrad(tf, ours);
    expect(theirs.numParameters).toBe(ours.numParameters);
    const tensorsBefore = tf.memory().numTensors;
    const losses: [number, number][] = [];
    for (const ids of tokenBatches(TINY, 3))
      losses.push([(await ours.step(ids, true))!, (await theirs.step(ids, true))!]);
    expect(tf.memory().numTensors).toBe(tensorsBefore); // the TF.js step frees what it makes
    expect(losses[0][0]).toBeCloseTo(Math.log(TINY.vocab), 1); // N(0, 0.02) init: near-uniform predictions
    for (const [a, b] of losses) expect(Math.abs(a - b)).toBeLessThan(1e-4);
    // The updates moved the weights (both frameworks alike): the same batch now scores differently.
    const [first] = tokenBatches(TINY, 1);
    const [again, againTf] = [(await ours.step(first, true))!, (await theirs.step(first, true))!];
    expect(Math.abs(again - losses[0][0])).toBeGreaterThan(1e-3);
    expect(Math.abs(again - againTf)).toBeLessThan(1e-4);
    ours.dispose();
    theirs.dispose();
  });

  it('refuses to copy a CLEX model into the plain-RoPE TF.js decoder', async () => {
    const tf = await bootTfjs();
    const ours = new DawngradDecoder(TINY, 'clex');
    await expect(TfjsDecoder.fromDawngrad(tf, ours)).rejects.toThrow(/plain RoPE only/);
    ours.dispose();
  });

  it('times CLEX training steps and counts their GPU traffic', async () => {
    manualSeed(0);
    const ours = new DawngradDecoder(TINY, 'clex');
    const before = memory().dispatches;
    const timing = await timeTraining(ours, TINY, 1);
    expect(timing.msPerStep).toBeGreaterThan(0);
    expect(timing.tokensPerSecond).toBeCloseTo((TINY.batch * TINY.seqLen * 1000) / timing.msPerStep, 6);
    expect(timing.traffic.dispatches).toBeGreaterThan(10);
    expect(timing.traffic.readbacks).toBeGreaterThanOrEqual(0.1); // at least the loss read closing each block
    expect(memory().dispatches - before).toBeGreaterThan(10 * timing.traffic.dispatches); // the untimed steps ran too
    ours.dispose();
  });
});
