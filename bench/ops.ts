// The per-op rows of `npm run bench`: matmul, elementwise, softmax, layer norm, attention and an MLP
// training step, dawngrad vs TF.js on the same adapter (median of `reps` calls, each ending in a read).
import type * as TF from '@tensorflow/tfjs-core';
import { functional as F, noGrad, randn, resetPeak, scope, memory, type Tensor } from '../index.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withConfig } from '../core/config.js';
import { variantUsage } from '../core/op.js';
import { countTraffic, median, medianMs, type TrafficPerStep } from './measure.js';

export interface OpRow {
  kind: 'op';
  name: string;
  /** dawngrad with autotune on (its choices measured in this run, from an empty cache). */
  oursMs: number;
  /** dawngrad with autotune off (the heuristics), timed alternately with oursMs. */
  heuristicMs: number;
  /** Whether autotune ran other variants than the heuristics (else the two times differ by noise only). */
  tunedDiffers: boolean;
  tfjsMs: number;
  /** tfjsMs / oursMs. */
  speedup: number;
  note?: string;
  /** For the MLP training step: dawngrad's GPU traffic per step and peak live memory. */
  traffic?: TrafficPerStep & { peakMiB: number };
}

export interface OpBenchOptions {
  reps: number;
  /** Shapes where a real GPU is compute-bound rather than latency-bound (BENCH_SIZE=large). */
  large: boolean;
  /** Runs only the rows whose name matches. */
  selected: (name: string) => boolean;
}

export function formatOpRow(r: OpRow): string {
  const tuned = `autotuned ×${(r.heuristicMs / r.oursMs).toFixed(2)} vs heuristics (${r.tunedDiffers ? 'other variants' : 'same variants'})`;
  return `${r.name.padEnd(34)} dawngrad ${r.oursMs.toFixed(2).padStart(8)} ms   tfjs ${r.tfjsMs.toFixed(2).padStart(8)} ms   speedup ×${r.speedup.toFixed(2)}   ${tuned}${r.note ? `   (${r.note})` : ''}`;
}

/** The kernel:variant pairs `run` dispatches. */
async function variantsOf(run: () => Promise<void>): Promise<string> {
  const before = new Map(variantUsage());
  await run();
  return [...variantUsage()]
    .filter(([k, n]) => n > (before.get(k) ?? 0))
    .map(([k]) => k)
    .sort()
    .join(' ');
}

/**
 * Median ms of `run` with autotune on (tuning on its first call, into `cacheDir`) and off, timed
 * alternately so drift in the machine's load hits both alike.
 */
async function autotunedAndHeuristic(run: () => Promise<void>, reps: number, cacheDir: string) {
  const on = () => withConfig({ autotune: 'on', cacheDir }, run);
  const off = () => withConfig({ autotune: 'off' }, run);
  await on(); // tunes what this op's kernels have not met yet
  await new Promise((r) => setTimeout(r, 100)); // the timestamp readbacks land
  const tunedDiffers = (await variantsOf(on)) !== (await variantsOf(off));
  const [tuned, heuristic]: number[][] = [[], []];
  for (let i = 0; i < reps; i++) {
    for (const [f, into] of [
      [on, tuned],
      [off, heuristic],
    ] as const) {
      const t0 = performance.now();
      await f();
      into.push(performance.now() - t0);
    }
  }
  return { oursMs: median(tuned), heuristicMs: median(heuristic), tunedDiffers };
}

export async function opRows(tf: typeof TF, o: OpBenchOptions, report: (row: OpRow) => void): Promise<OpRow[]> {
  const rows: OpRow[] = [];
  // An empty autotune cache: this run measures tuning from scratch, whatever the user's cache holds.
  const tuneDir = mkdtempSync(join(tmpdir(), 'dawngrad-bench-tune-'));
  const ours = (f: () => Tensor) => () =>
    scope(async () => {
      await f().data();
    });
  const theirs = (f: () => TF.Tensor) => async () => {
    const t = tf.tidy(f);
    await t.data();
    t.dispose();
  };
  async function compare(
    name: string,
    a: () => Promise<void>,
    b: () => Promise<void>,
    note?: string,
  ): Promise<OpRow | null> {
    if (!o.selected(name)) return null;
    const ours = await autotunedAndHeuristic(a, o.reps, tuneDir);
    const tfjsMs = await medianMs(b, o.reps);
    const row: OpRow = { kind: 'op', name, ...ours, tfjsMs, speedup: tfjsMs / ours.oursMs, ...(note ? { note } : {}) };
    rows.push(row);
    report(row);
    return row;
  }

  const MM = o.large ? [1024, 2048] : [256, 512];
  const EW_N = o.large ? 1 << 24 : 1 << 20;
  const [ROWS, COLS] = o.large ? [4096, 4096] : [256, 1024];
  const [B, H, T, D] = o.large ? [1, 8, 1024, 64] : [1, 4, 256, 64];
  const [BATCH, WIDTH] = o.large ? [1024, 2048] : [128, 512];

  // Each block runs in a scope so its inputs are freed before the next one.
  for (const n of MM) {
    await scope(async () => {
      const a = randn([n, n]);
      const b = randn([n, n]);
      const ta = tf.randomNormal([n, n]);
      const tb = tf.randomNormal([n, n]);
      await compare(
        `matmul ${n}×${n}×${n}`,
        ours(() => a.matmul(b)),
        theirs(() => tf.matMul(ta, tb)),
      );
      tf.dispose([ta, tb]);
    });
  }
  await scope(async () => {
    const a = randn([EW_N]);
    const b = randn([EW_N]);
    const ta = tf.randomNormal([EW_N]);
    const tb = tf.randomNormal([EW_N]);
    await compare(
      `elementwise a·b+a (${EW_N >> 20}M)`,
      ours(() => a.mul(b).add(a)),
      theirs(() => tf.add(tf.mul(ta, tb), ta)),
    );
    tf.dispose([ta, tb]);
  });
  await scope(async () => {
    const x = randn([ROWS, COLS]);
    const tx = tf.randomNormal([ROWS, COLS]);
    await compare(
      `softmax ${ROWS}×${COLS}`,
      ours(() => F.softmax(x, -1)),
      theirs(() => tf.softmax(tx)),
    );
    await compare(
      `layer norm ${ROWS}×${COLS}`,
      ours(() => F.layerNorm(x)),
      theirs(() => {
        const m = tf.moments(tx, -1, true);
        return tf.mul(tf.sub(tx, m.mean), tf.rsqrt(tf.add(m.variance, 1e-5)));
      }),
    );
    tx.dispose();
  });
  await scope(async () => {
    const q = randn([B, H, T, D]);
    const k = randn([B, H, T, D]);
    const v = randn([B, H, T, D]);
    const tq = tf.randomNormal([B, H, T, D]);
    const tk = tf.randomNormal([B, H, T, D]);
    const tv = tf.randomNormal([B, H, T, D]);
    const composed = () => {
      const s = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(D));
      const e = s.sub(s.max(-1, true)).exp();
      return e.div(e.sum(-1, true)).matmul(v);
    };
    const tfAttn = theirs(() => tf.matMul(tf.softmax(tf.div(tf.matMul(tq, tk, false, true), Math.sqrt(D))), tv));
    const shape = `${B}×${H}×${T}×${D}`;
    await compare(
      `attention ${shape} (fused)`,
      ours(() => F.scaledDotProductAttention(q, k, v)),
      tfAttn,
      'online softmax',
    );
    await compare(`attention ${shape} (composed)`, ours(composed), tfAttn, 'matmul+softmax');
    tf.dispose([tq, tk, tv]);
  });
  await scope(async () => {
    // One SGD training step of a 256→W→W→10 MLP.
    const dims = [256, WIDTH, WIDTH, 10];
    const ws = dims.slice(1).map((d, i) => {
      const w = randn([dims[i], d]).mul(1 / Math.sqrt(dims[i]));
      w.requiresGrad = true;
      return w;
    });
    const x = randn([BATCH, 256]);
    const y = randn([BATCH, 10]);
    const step = () =>
      scope(async () => {
        let h: Tensor = x;
        ws.forEach((w, i) => {
          h = h.matmul(w);
          if (i < ws.length - 1) h = h.relu();
        });
        const loss = h.sub(y).square().mean();
        loss.backward();
        noGrad(() =>
          ws.forEach((w) => {
            w.copy_(w.sub(w.grad!.mul(0.01)));
            w.grad = null;
          }),
        );
        await loss.data();
      });
    const tws = dims.slice(1).map((d, i) => tf.variable(tf.mul(tf.randomNormal([dims[i], d]), 1 / Math.sqrt(dims[i]))));
    const tx = tf.randomNormal([BATCH, 256]);
    const ty = tf.randomNormal([BATCH, 10]);
    const opt = tf.train.sgd(0.01);
    const tstep = async () => {
      const loss = opt.minimize(() => {
        let h: TF.Tensor = tx;
        tws.forEach((w, i) => {
          h = tf.matMul(h, w);
          if (i < tws.length - 1) h = tf.relu(h);
        });
        return tf.mean(tf.square(tf.sub(h, ty))) as TF.Scalar;
      }, true)!;
      await loss.data();
      loss.dispose();
    };
    await step();
    const traffic = countTraffic();
    resetPeak();
    await step();
    const counted = { ...traffic(1), peakMiB: memory().peakBytes / 2 ** 20 };
    const row = await compare(`training step MLP 256-${WIDTH}-${WIDTH}-10 b${BATCH}`, step, tstep);
    if (row) row.traffic = counted;
    tf.dispose([...tws, tx, ty]);
    opt.dispose();
  });
  return rows;
}
