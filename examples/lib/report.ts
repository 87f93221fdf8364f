// Evaluation output: the markdown table, results.json, and the chart (vega-lite → SVG with vega's
// headless renderer, SVG → PNG with resvg): perplexity vs length on a log2 axis, one line per
// model/rule, the training length L0 marked.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export interface ResultRow {
  /** What the row is: a checkpoint name, plus the rule it was evaluated under. */
  name: string;
  checkpoint: string;
  rule: string;
  /** Perplexity by evaluation length. */
  ppl: Record<number, number>;
}

export interface Results {
  L0: number;
  lengths: number[];
  /** Held-out tokens every length was scored on. */
  tokens: number;
  rows: ResultRow[];
  passkey?: { name: string; accuracy: Record<number, Record<number, number>> }[];
}

export function markdownTable(results: Results): string {
  const head = `| model | ${results.lengths.map((L) => `${L}`).join(' | ')} |`;
  const rule = `|---|${results.lengths.map(() => '---').join('|')}|`;
  const rows = results.rows.map((r) => `| ${r.name} | ${results.lengths.map((L) => r.ppl[L].toFixed(2)).join(' | ')} |`);
  return [head, rule, ...rows].join('\n');
}

export function passkeyTable(results: Results): string {
  if (!results.passkey?.length) return '';
  const depths = Object.keys(results.passkey[0].accuracy[results.lengths[0]]).map(Number);
  const head = `| model (passkey accuracy, mean over depths ${depths.join(', ')}) | ${results.lengths.join(' | ')} |`;
  const rule = `|---|${results.lengths.map(() => '---').join('|')}|`;
  const rows = results.passkey.map((p) => `| ${p.name} | ${results.lengths.map((L) => {
    const byDepth = Object.values(p.accuracy[L]);
    return (byDepth.reduce((a, b) => a + b, 0) / byDepth.length).toFixed(2);
  }).join(' | ')} |`);
  return [head, rule, ...rows].join('\n');
}

function chartSpec(results: Results, title: string): vegaLite.TopLevelSpec {
  const points = results.rows.flatMap((r) => results.lengths.map((L) => ({ length: L, perplexity: r.ppl[L], model: r.name })));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 560,
    height: 340,
    background: 'white',
    config: { font: 'DejaVu Sans' },
    layer: [
      {
        data: { values: points },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'length', type: 'quantitative', title: 'evaluation length (tokens, log2 scale)', scale: { type: 'log', base: 2, nice: false, domain: [results.lengths[0], results.lengths[results.lengths.length - 1]] }, axis: { values: results.lengths } },
          y: { field: 'perplexity', type: 'quantitative', title: 'held-out perplexity (log scale)', scale: { type: 'log' } },
          color: { field: 'model', type: 'nominal', title: null, sort: results.rows.map((r) => r.name), scale: { scheme: 'tableau20' }, legend: { orient: 'right', labelLimit: 560 } },
        },
      },
      {
        data: { values: [{ length: results.L0, label: `L0 = ${results.L0}` }] },
        layer: [
          { mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' }, encoding: { x: { field: 'length', type: 'quantitative' } } },
          { mark: { type: 'text', align: 'left', dx: 4, dy: -150, color: 'gray' }, encoding: { x: { field: 'length', type: 'quantitative' }, text: { field: 'label' } } },
        ],
      },
    ],
  };
}

/** Writes `name`.svg and `name`.png into `dir`; returns their paths. */
export async function writeChart(dir: string, results: Results, title: string, name = 'chart'): Promise<{ svg: string; png: string }> {
  const view = new vega.View(vega.parse(vegaLite.compile(chartSpec(results, title)).spec), { renderer: 'none' });
  const svgText = await view.toSVG();
  view.finalize();
  const png = new Resvg(svgText, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, fitTo: { mode: 'zoom', value: 2 } }).render().asPng();
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
