// Evaluation output: the markdown table, results.json, and the chart (vega-lite → SVG with vega's
// headless renderer, SVG → PNG with resvg): two panels, held-out perplexity and passkey accuracy vs
// length on a log2 axis, one line per model/rule (line style: trained, training-free or ablation),
// the training length L0 marked. Also the loss curves of several training runs in one chart.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';
import type { MetricsRecord } from './metrics.js';

export interface ResultRow {
  /** What the row is: a checkpoint name, plus the rule it was evaluated under. */
  name: string;
  checkpoint: string;
  rule: string;
  /** Perplexity by evaluation length. */
  ppl: Record<number, number>;
  /** How the chart draws it (default 'trained'). */
  kind?: RowKind;
}

export interface Results {
  L0: number;
  lengths: number[];
  /** Held-out tokens every length was scored on. */
  tokens: number;
  rows: ResultRow[];
  passkey?: { name: string; accuracy: Record<number, Record<number, number>> }[];
  /** The main job's settings and stage times, and whether its passkey calibration passed. */
  recipe?: Record<string, unknown>;
  timings?: string[];
  passkeyCalibration?: { passed: boolean; worst: number; message: string };
}

export function markdownTable(results: Results): string {
  const head = `| model | ${results.lengths.map((L) => `${L}`).join(' | ')} |`;
  const rule = `|---|${results.lengths.map(() => '---').join('|')}|`;
  const rows = results.rows.map(
    (r) => `| ${r.name} | ${results.lengths.map((L) => r.ppl[L].toFixed(2)).join(' | ')} |`,
  );
  return [head, rule, ...rows].join('\n');
}

export function passkeyTable(results: Results): string {
  if (!results.passkey?.length) return '';
  const depths = Object.keys(results.passkey[0].accuracy[results.lengths[0]]).map(Number);
  const head = `| model (passkey accuracy, mean over depths ${depths.join(', ')}) | ${results.lengths.join(' | ')} |`;
  const rule = `|---|${results.lengths.map(() => '---').join('|')}|`;
  const rows = results.passkey.map(
    (p) =>
      `| ${p.name} | ${results.lengths
        .map((L) => {
          const byDepth = Object.values(p.accuracy[L]);
          return (byDepth.reduce((a, b) => a + b, 0) / byDepth.length).toFixed(2);
        })
        .join(' | ')} |`,
  );
  return [head, rule, ...rows].join('\n');
}

/** How a row's line is drawn: the checkpoint as trained, a training-free rule on its weights, or an ablation. */
export type RowKind = 'trained' | 'training-free' | 'ablation';

/** Mean passkey accuracy over depths, per length, of the row named `name` (undefined without a passkey test). */
export function passkeyMeans(results: Results, name: string): Record<number, number> | undefined {
  const p = results.passkey?.find((r) => r.name === name);
  if (!p) return undefined;
  return Object.fromEntries(
    results.lengths.map((L) => {
      const byDepth = Object.values(p.accuracy[L] ?? {});
      return [L, byDepth.reduce((a, b) => a + b, 0) / Math.max(1, byDepth.length)];
    }),
  );
}

/** Distinct hues (no light/dark pairs of one hue, so neighbouring rows are not confused). */
const PALETTE = [
  '#4c78a8',
  '#f58518',
  '#54a24b',
  '#b279a2',
  '#17becf',
  '#7f7f7f',
  '#9d755d',
  '#bcbd22',
  '#e45756',
  '#ff9da6',
  '#000000',
  '#1f3b73',
  '#eeca3b',
];

function chartSpec(results: Results, title: string): vegaLite.TopLevelSpec {
  const n = results.rows.length;
  // Rows that coincide stay visible: each row's points are dodged sideways by a small factor on the log axis.
  const dodge = (i: number) => 2 ** (((i - (n - 1) / 2) / Math.max(1, n - 1)) * 0.18);
  const kindOf = (r: ResultRow): RowKind => r.kind ?? 'trained';
  const points = results.rows.flatMap((r, i) => {
    const pk = passkeyMeans(results, r.name);
    return results.lengths.map((L) => ({
      length: L * dodge(i),
      perplexity: r.ppl[L],
      passkey: pk?.[L],
      model: r.name,
      kind: kindOf(r),
    }));
  });
  const ppls = results.rows.flatMap((r) => results.lengths.map((L) => r.ppl[L])).filter(Number.isFinite);
  const domain = [Math.min(...ppls) / 1.06, Math.max(...ppls) * 1.06];
  const x = {
    field: 'length',
    type: 'quantitative',
    title: 'evaluation length (tokens, log2 scale)',
    scale: {
      type: 'log',
      base: 2,
      nice: false,
      domain: [results.lengths[0] / 1.15, results.lengths[results.lengths.length - 1] * 1.15],
    },
    axis: { values: results.lengths },
  } as const;
  const kindLegend = {
    orient: 'right',
    title: 'marker and line',
    labelLimit: 300,
    symbolStrokeWidth: 2,
    labelExpr:
      "datum.label == 'trained' ? 'as trained' : datum.label == 'training-free' ? 'training-free rule' : 'ablation (ODE reset)'",
  } as const;
  const encodingCommon = {
    x,
    color: {
      field: 'model',
      type: 'nominal',
      title: null,
      sort: results.rows.map((r) => r.name),
      scale: { range: PALETTE },
      legend: { orient: 'right', labelLimit: 600, symbolStrokeWidth: 3, symbolType: 'stroke' },
    },
    strokeDash: {
      field: 'kind',
      type: 'nominal',
      scale: {
        domain: ['trained', 'training-free', 'ablation'],
        range: [
          [1, 0],
          [6, 3],
          [2, 2],
        ],
      },
      legend: kindLegend,
    },
    shape: {
      field: 'kind',
      type: 'nominal',
      legend: kindLegend, // the same legend as strokeDash (one field, one legend: vega merges them)
      scale: { domain: ['trained', 'training-free', 'ablation'], range: ['circle', 'triangle-up', 'square'] },
    },
  } as const;
  const l0Rule = {
    data: { values: [{ length: results.L0 }] },
    mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' },
    encoding: { x: { field: 'length', type: 'quantitative' } },
  } as const;
  const panel = (field: 'perplexity' | 'passkey', yTitle: string, scale: Record<string, unknown>) => ({
    width: 400,
    height: 360, // tall enough for the y titles: a rotated title longer than its panel pads the whole figure
    layer: [
      {
        data: { values: points },
        mark: { type: 'line', point: { filled: true, size: 40 }, strokeWidth: 1.8 },
        encoding: { ...encodingCommon, y: { field, type: 'quantitative', title: yTitle, scale } },
      },
      l0Rule,
    ],
  });
  const panels = [
    panel('perplexity', `held-out perplexity (log scale; dashed gray: L0 = ${results.L0})`, {
      type: 'log',
      nice: false,
      domain,
    }),
  ];
  if (results.passkey?.length)
    panels.push(
      panel('passkey', 'passkey accuracy (one digit: chance 0.1)', { domain: [-0.03, 1.03], nice: false, zero: false }),
    );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, fontSize: 15, offset: 14 },
    background: 'white',
    config: { font: 'DejaVu Sans' },
    hconcat: panels,
    resolve: { scale: { color: 'shared', strokeDash: 'shared', shape: 'shared' } },
  } as unknown as vegaLite.TopLevelSpec;
}

/** Writes `name`.svg and `name`.png into `dir`; returns their paths. */
export function writeChart(
  dir: string,
  results: Results,
  title: string,
  name = 'chart',
): Promise<{ svg: string; png: string }> {
  return renderChart(dir, chartSpec(results, title), name);
}

/** One training run's logged losses (metrics.jsonl) under a name. */
export interface LossCurve {
  name: string;
  records: readonly MetricsRecord[];
}

/**
 * Training curves of several runs in one panel: each run's logged training loss (solid) and held-out
 * loss, ln(val_ppl) (dashed, with points), against the step. Writes `name`.svg and `name`.png into `dir`.
 */
export function writeLossChart(
  dir: string,
  curves: readonly LossCurve[],
  title: string,
  name: string,
): Promise<{ svg: string; png: string }> {
  const points = curves.flatMap((c) => [
    ...c.records.map((r) => ({ step: r.step, loss: r.loss, run: c.name, series: 'training (batch)' })),
    ...c.records
      .filter((r) => r.val_ppl !== undefined)
      .map((r) => ({ step: r.step, loss: Math.log(r.val_ppl!), run: c.name, series: 'held-out' })),
  ]);
  const losses = points.map((p) => p.loss).filter(Number.isFinite);
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, fontSize: 15, offset: 14 },
    background: 'white',
    config: { font: 'DejaVu Sans' },
    width: 560,
    height: 320,
    data: { values: points },
    mark: { type: 'line', point: false, strokeWidth: 1.6, opacity: 0.85 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
      y: {
        field: 'loss',
        type: 'quantitative',
        title: 'loss (nats per byte, log scale)',
        scale: { type: 'log', nice: false, domain: [Math.min(...losses) / 1.04, Math.max(...losses) * 1.04] },
      },
      color: {
        field: 'run',
        type: 'nominal',
        title: null,
        sort: curves.map((c) => c.name),
        scale: { range: PALETTE },
        legend: { orient: 'right', labelLimit: 400, symbolStrokeWidth: 3, symbolType: 'stroke' },
      },
      strokeDash: {
        field: 'series',
        type: 'nominal',
        title: 'loss',
        scale: {
          domain: ['training (batch)', 'held-out'],
          range: [
            [1, 0],
            [6, 3],
          ],
        },
        legend: { orient: 'right', symbolStrokeWidth: 2 },
      },
      detail: { field: 'series', type: 'nominal' },
    },
  } as unknown as vegaLite.TopLevelSpec;
  return renderChart(dir, spec, name);
}

/** Renders a vega-lite spec to `name`.svg (vega's headless renderer) and `name`.png (resvg) in `dir`. */
async function renderChart(
  dir: string,
  spec: vegaLite.TopLevelSpec,
  name: string,
): Promise<{ svg: string; png: string }> {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  const svgText = await view.toSVG();
  view.finalize();
  const png = new Resvg(svgText, {
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
    fitTo: { mode: 'zoom', value: 2 },
  })
    .render()
    .asPng();
  const paths = { svg: join(dir, `${name}.svg`), png: join(dir, `${name}.png`) };
  writeFileSync(paths.svg, svgText);
  writeFileSync(paths.png, png);
  return paths;
}

export function writeResults(dir: string, results: Results): string {
  const path = join(dir, 'results.json');
  writeFileSync(path, JSON.stringify(results, null, 2) + '\n');
  return path;
}
