// What the main job's results show, checked against its claims: the passkey calibration (the base
// must retrieve inside L0, or the passkey table measures nothing) and the CLEX targets of its verdict.
import { passkeyMeans, type Results } from './report.js';

export const ROW = {
  base: 'base, plain RoPE',
  clex: 'fine-tuned CLEX, ODE learned',
  clexReset: 'fine-tuned CLEX, ODE learned, ODE reset to W_down = 0',
  clexFrozen: 'fine-tuned CLEX, ODE frozen at init',
} as const;

/** Retrieval the base must reach at 1×L0, at every tested depth, for the passkey table to mean something. */
export const CALIBRATION_ACCURACY = 0.9;

export interface Calibration {
  passed: boolean;
  /** The base's lowest accuracy over depths at 1×L0. */
  worst: number;
  message: string;
}

/** Whether the passkey results are valid: the base row must retrieve ≥ 0.9 at 1×L0 at every depth. */
export function passkeyCalibration(results: Results, baseName: string = ROW.base): Calibration | null {
  const base = results.passkey?.find((p) => p.name === baseName);
  if (!base) return null;
  const byDepth = base.accuracy[results.lengths[0]] ?? {};
  const worst = Math.min(...Object.values(byDepth));
  const depths = Object.entries(byDepth)
    .map(([d, a]) => `${a.toFixed(2)} at depth ${d}`)
    .join(', ');
  return worst >= CALIBRATION_ACCURACY
    ? {
        passed: true,
        worst,
        message: `passkey calibration passed: the base retrieves ${depths} at 1×L0 = ${results.lengths[0]}.`,
      }
    : {
        passed: false,
        worst,
        message: `passkey results are VOID: the base retrieves only ${depths} at 1×L0 = ${results.lengths[0]} (it must reach ${CALIBRATION_ACCURACY} at every depth), so the passkey table cannot tell a method that extrapolates from one that does not. Give the base more passkey rows (--passkey-share) or steps (--base-steps), or another --seed: whether a base this small learns retrieval at every depth also depends on its run.`,
      };
}

export interface Target {
  what: string;
  value: string;
  met: boolean;
}

/** The CLEX targets of the main job, each with its measured value (missing rows: no targets). */
export function clexTargets(results: Results): Target[] {
  const [L1, , L4, L8] = results.lengths;
  const row = (name: string) => results.rows.find((r) => r.name === name);
  const clex = row(ROW.clex),
    base = row(ROW.base);
  if (!clex || !base || L8 === undefined) return [];
  const bestAt = (L: number) => Math.min(...results.rows.map((r) => r.ppl[L]));
  const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${(((a - b) / b) * 100).toFixed(1)}%`;
  const targets: Target[] = [
    {
      what: '4×L0 within 10% of 1×',
      value: `${(clex.ppl[L4] / clex.ppl[L1]).toFixed(2)}×`,
      met: clex.ppl[L4] <= 1.1 * clex.ppl[L1],
    },
    ...[L4, L8].map((L) => ({
      what: `best or within 1% of the best row at ${L / L1}×`,
      value: `${clex.ppl[L].toFixed(2)} vs best ${bestAt(L).toFixed(2)}`,
      met: clex.ppl[L] <= 1.01 * bestAt(L),
    })),
    {
      what: 'in the window within 2% of the base',
      value: pct(clex.ppl[L1], base.ppl[L1]),
      met: clex.ppl[L1] <= 1.02 * base.ppl[L1],
    },
  ];
  const passkey = passkeyMeans(results, ROW.clex);
  if (passkey) targets.push({ what: 'passkey ≥ 0.8 at 4×L0', value: passkey[L4].toFixed(2), met: passkey[L4] >= 0.8 });
  for (const [name, label] of [
    [ROW.clexFrozen, 'its ODE-frozen ablation'],
    [ROW.clexReset, 'the same weights with the ODE reset'],
  ] as const) {
    const other = row(name);
    if (other)
      targets.push({
        what: `learned ODE better than ${label} at 4× and 8×`,
        value: `${pct(clex.ppl[L4], other.ppl[L4])} / ${pct(clex.ppl[L8], other.ppl[L8])}`,
        met: clex.ppl[L4] < other.ppl[L4] && clex.ppl[L8] < other.ppl[L8],
      });
  }
  return targets;
}

/** The one-line verdict: the best rows at 4× and 8×, and each CLEX target met or missed. */
export function verdict(results: Results): string {
  const [, , L4, L8] = results.lengths;
  const best = (L: number) => results.rows.reduce((a, b) => (b.ppl[L] < a.ppl[L] ? b : a));
  const targets = clexTargets(results);
  const head = `best at 4×L0: "${best(L4).name}" (${best(L4).ppl[L4].toFixed(2)}); best at 8×L0: "${best(L8).name}" (${best(L8).ppl[L8].toFixed(2)})`;
  if (targets.length === 0) return `${head}.`;
  const met = targets.filter((t) => t.met).length;
  return `${head}; CLEX with its learned ODE meets ${met} of ${targets.length} targets: ${targets.map((t) => `${t.what} ${t.met ? 'met' : 'MISSED'} (${t.value})`).join('; ')}.`;
}
