// Length-extrapolation evaluation: held-out perplexity at several lengths on the same tokens
// (non-overlapping windows), training-free rope rules applied to a checkpoint's weights, and passkey
// retrieval by context length and depth (examples/lib/passkey.ts, contexts built from the held-out text).
import { models, noGrad, scope, tensor } from '../../index.js';
import {
  buildModel,
  loadModel,
  readCheckpointInfo,
  resetClexOde,
  type CausalModel,
  type ModelConfigJson,
} from './checkpoint.js';
import { UsageError } from './cli.js';
import { PASSKEY_DEPTHS, passkeyAccuracy } from './passkey.js';
import { inPrecision, type Precision } from './precision.js';
import type { ResultRow, Results, RowKind } from './report.js';

/** Training-free rules a checkpoint can be evaluated under (s = L/L0; 'clex-init': CLEX with W_down = 0). */
export const RULES = ['linear', 'ntk', 'dynamic', 'yarn', 'clex-init'] as const;
export type Rule = (typeof RULES)[number];

/** Tokens a forward may hold at once (batch × length) while scoring. */
const TOKENS_PER_FORWARD = 8192;

/** The held-out tokens all lengths are scored on: a multiple of the longest length, at most maxTokens. */
export function evaluationTokens(ids: ArrayLike<number>, longest: number, maxTokens: number): Int32Array {
  const n = Math.floor(Math.min(ids.length, maxTokens) / longest) * longest;
  if (n === 0)
    throw new UsageError(
      `the held-out text has ${ids.length} tokens${maxTokens < ids.length ? ` (--max-tokens ${maxTokens})` : ''}, fewer than one window of the longest length ${longest}; give more held-out text or shorter --lengths`,
    );
  return Int32Array.from({ length: n }, (_, i) => ids[i]);
}

/** Perplexity of next-token prediction over `tokens` cut into windows of `length` (f16-mixed: forwards under autocast). */
export async function perplexity(
  model: models.CausalLM,
  tokens: Int32Array,
  length: number,
  precision: Precision = 'f32',
): Promise<number> {
  const windows = tokens.length / length;
  const perForward = Math.max(1, Math.floor(TOKENS_PER_FORWARD / length));
  model.eval();
  let total = 0;
  for (let w = 0; w < windows; w += perForward) {
    const rows = Math.min(perForward, windows - w);
    total += await noGrad(() =>
      scope(async () => {
        const ids = tensor(tokens.subarray(w * length, (w + rows) * length), { dtype: 'int32', shape: [rows, length] });
        const { loss } = await inPrecision(precision, () => model.forward(ids, { labels: ids }));
        return (await loss!.item()) * rows; // the mean over rows·(length − 1) predictions
      }),
    );
  }
  return Math.exp(total / windows);
}

/** rope_scaling of `rule` at evaluation length L (L ≤ L0: plain RoPE, except dynamic and CLEX which adapt themselves). */
export function ruleScaling(rule: Rule, length: number, L0: number): Partial<models.RopeScaling> | null {
  if (rule === 'clex-init') return { type: 'clex', max_factor: Math.max(1, Math.ceil(length / L0)) };
  if (rule === 'dynamic') return { type: 'dynamic', factor: 1 };
  return length > L0 ? { type: rule, factor: length / L0 } : null;
}

/** The same weights under another positional rule (a new model; CLEX weights are dropped or freshly initialised). */
export function withRule(model: CausalModel, rule: Rule, length: number): CausalModel {
  const config = model.config.toJSON() as ModelConfigJson;
  const target = buildModel({
    ...config,
    rope_scaling: ruleScaling(rule, length, model.config.max_position_embeddings),
  });
  const own = target.stateDict();
  target.loadStateDict(Object.fromEntries(Object.entries(model.stateDict()).filter(([k]) => k in own)), {
    strict: false,
  });
  return target;
}

/** One checkpoint to evaluate, and the extra rows made from it. */
export interface EvalTarget {
  dir: string;
  /** Row label of the checkpoint as trained. */
  name: string;
  /** Training-free rules to evaluate its weights under (one row each). */
  rules?: Rule[];
  /** Also evaluate a CLEX checkpoint with its ODE reset to W_down = 0 (one more row). */
  resetOde?: boolean;
  /** Leave out the row of the checkpoint as trained (only its rule rows). */
  rulesOnly?: boolean;
}

export interface EvalSettings {
  heldOutText: string;
  /** Default: 1, 2, 4, 8 × L0 of the first checkpoint. */
  lengths?: number[];
  maxTokens: number;
  /** Passkey samples per (length, depth); 0 = no passkey test. */
  passkeySamples: number;
  /** 'f16-mixed': every forward under autocast('float16') (default 'f32'). */
  precision?: Precision;
  log?: (line: string) => void;
}

export const ruleLabel = (rule: Rule): string =>
  rule === 'clex-init'
    ? 'CLEX at init (W_down = 0, i.e. NTK(2t−1)), training-free'
    : `${{ linear: 'PI', ntk: 'NTK', dynamic: 'dynamic NTK', yarn: 'YaRN' }[rule]} (s = L/L0), training-free`;

/** Perplexity at every length (and passkey accuracy) for each target's rows. */
export async function evaluateCheckpoints(targets: EvalTarget[], s: EvalSettings): Promise<Results> {
  const log = s.log ?? (() => {});
  const first = await readCheckpointInfo('eval-length', targets[0].dir);
  const L0 = first.config.max_position_embeddings ?? 0;
  const lengths = s.lengths ?? [1, 2, 4, 8].map((k) => k * L0);
  const longest = Math.max(...lengths);
  const results: Results = { L0, lengths, tokens: 0, rows: [], ...(s.passkeySamples > 0 ? { passkey: [] } : {}) };
  for (const target of targets) {
    const { model, info, tokenizer } = await loadModel('eval-length', target.dir);
    const rs = info.config.rope_scaling;
    if (rs?.type === 'clex' && longest > (rs.max_factor ?? 0) * L0)
      throw new UsageError(
        `eval-length: ${target.dir} is a CLEX model with max_factor ${rs.max_factor}, which cannot run ${longest} tokens (> ${rs.max_factor}·${L0}); lower --lengths`,
      );
    if (target.resetOde && rs?.type !== 'clex')
      throw new UsageError(
        `--clex-reset-ode: ${target.dir} is not a CLEX checkpoint (rope_scaling ${JSON.stringify(rs?.type ?? 'none')})`,
      );
    const heldOut = tokenizer.encode(s.heldOutText);
    const tokens = evaluationTokens(heldOut, longest, s.maxTokens);
    results.tokens = tokens.length;
    // A row is a model per length: the checkpoint itself, its ODE-reset copy, or a new model per length for a rule.
    type Variant = { name: string; rule: string; kind: RowKind; at: (L: number) => CausalModel; perLength: boolean };
    const variants: Variant[] = [];
    const shared: CausalModel[] = [model];
    if (!target.rulesOnly)
      variants.push({
        name: target.name,
        rule: rs?.type ?? 'none',
        kind: 'trained',
        at: () => model,
        perLength: false,
      });
    if (target.resetOde) {
      const reset = buildModel(info.config);
      reset.loadStateDict(model.stateDict());
      resetClexOde(reset);
      shared.push(reset);
      variants.push({
        name: `${target.name}, ODE reset to W_down = 0`,
        rule: 'clex-ode-reset',
        kind: 'ablation',
        at: () => reset,
        perLength: false,
      });
    }
    for (const rule of target.rules ?? [])
      variants.push({
        name: `${target.name} + ${ruleLabel(rule)}`,
        rule,
        kind: 'training-free',
        at: (L) => withRule(model, rule, L),
        perLength: true,
      });
    for (const v of variants) {
      const t0 = performance.now();
      const row: ResultRow = { name: v.name, checkpoint: target.dir, rule: v.rule, kind: v.kind, ppl: {} };
      const passkey: Record<number, Record<number, number>> = {};
      for (const L of lengths) {
        const m = v.at(L);
        row.ppl[L] = await perplexity(m, tokens, L, s.precision);
        if (s.passkeySamples > 0) {
          passkey[L] = {};
          for (const depth of PASSKEY_DEPTHS)
            passkey[L][depth] = await inPrecision(s.precision ?? 'f32', () =>
              passkeyAccuracy(m, tokenizer, heldOut, L, depth, s.passkeySamples),
            );
        }
        if (v.perLength) m.dispose();
      }
      results.rows.push(row);
      results.passkey?.push({ name: v.name, accuracy: passkey });
      log(
        `  ${v.name}: ${lengths.map((L) => `${L} → ${row.ppl[L].toFixed(2)}`).join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
    shared.forEach((m) => m.dispose());
  }
  return results;
}
