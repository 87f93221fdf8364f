// Optimizer groups for CLEX fine-tuning: the ODE weights get lr / (λd·(max_factor − 1)) and no weight
// decay, which bounds one Adam step's change of any log-frequency at any t by lr (the plain rate moves
// them by up to λd·(max_factor − 1)·lr).
import { describe, expect, it } from 'vitest';
import { manualSeed, models, nn, noGrad, OpError, optim, scope } from '../index.js';
import { ids, tinyModel, values } from './models-helpers.js';

/** max over t = 2..max_factor and k of |z_k(t) after − z_k(t) before|. */
async function maxLogFrequencyChange(clex: models.CLEX, before: Float64Array[]): Promise<number> {
  let worst = 0;
  for (let t = 2; t <= clex.maxFactor; t++) {
    const after = await clex.cached(t);
    after.forEach((v, k) => (worst = Math.max(worst, Math.abs(Math.log(v) - Math.log(before[t - 2][k])))));
  }
  return worst;
}

/** One AdamW step of a fresh CLEX fine-tune (W_down = 0, as at init) on a training-mode loss with t > 1. */
async function oneStepChange(
  groups: (m: models.CausalLM, lr: number) => optim.ParamGroupInput<optim.AdamHyper>[] | null,
  lr: number,
): Promise<number> {
  const m = tinyModel('llama', { type: 'clex', max_factor: 4, ode_method: 'rk4', time_dt: 0.25 });
  const clex = m.clex!;
  noGrad(() => nn.init.zeros(clex.proj_func.ode_down_proj));
  const before: Float64Array[] = [];
  for (let t = 2; t <= clex.maxFactor; t++) before.push(await clex.cached(t));
  const g = groups(m, lr);
  const opt = new optim.AdamW(g ?? m.parameters(), { lr, weightDecay: 0.01 });
  m.train();
  await backwardAtSampledT(m);
  opt.step();
  const change = await maxLogFrequencyChange(clex, before);
  opt.dispose();
  m.dispose();
  return change;
}

/** One training-mode forward + backward on a fixed sequence, at the first seed whose sampled t is > 1. */
async function backwardAtSampledT(m: ReturnType<typeof tinyModel>): Promise<void> {
  let seed = 0;
  while ((manualSeed(seed), m.clex!.sample(8).t) === 1) seed++;
  manualSeed(seed);
  const seq = [Array.from({ length: 8 }, (_, i) => (i * 7 + 3) % 11)];
  await scope(async () => (await m.forward(ids(seq), { labels: ids(seq) })).loss!.backwardAsync());
}

describe('CLEX optimizer groups', () => {
  it('put the ODE weights in their own group (lr / (λd·(max_factor − 1)), no decay) and every other parameter once in the rest', () => {
    const m = tinyModel('neox', { type: 'clex', max_factor: 4, param_factor: 2 });
    const clex = m.clex!;
    // NeoX rotates rotary_ndims = 4 dims here: λd = 2·4, max_factor − 1 = 3.
    expect(models.clexOdeLearningRate(clex, 2.4e-3)).toBeCloseTo(2.4e-3 / (8 * 3), 15);
    const groups = models.clexParamGroups(m, { lr: 2.4e-3, weightDecay: 0.1 });
    expect(groups).toHaveLength(3);
    const [decayed, notDecayed, ode] = groups;
    expect(ode.params).toEqual(clex.parameters());
    expect(ode.lr).toBeCloseTo(1e-4, 15);
    expect(ode.weightDecay).toBe(0);
    // The rest split by role, as optim.weightDecayGroups does: no decay on biases and norm gains.
    expect(decayed).toMatchObject({ lr: 2.4e-3, weightDecay: 0.1 });
    expect(notDecayed).toMatchObject({ lr: 2.4e-3, weightDecay: 0 });
    const roles = m.parameterRoles();
    expect(new Set(decayed.params.map((p) => roles.get(p)))).toEqual(new Set(['weight', 'embedding']));
    expect(new Set(notDecayed.params.map((p) => roles.get(p)))).toEqual(new Set(['bias', 'norm']));
    const all = groups.flatMap((g) => g.params);
    expect(new Set(all).size).toBe(all.length);
    expect(new Set(all)).toEqual(new Set(m.parameters()));
    // An optimizer accepts them as they are.
    new optim.AdamW(groups, { lr: 2.4e-3 }).dispose();
  });

  it('leave a model without CLEX in one group, and name the function and value on bad input', () => {
    const m = tinyModel('llama', null);
    expect(models.clexOdeParamGroup(m, 1e-3)).toBeNull();
    const groups = models.clexParamGroups(m, { lr: 1e-3 });
    expect(new Set(groups.flatMap((g) => g.params))).toEqual(new Set(m.parameters()));
    for (const g of groups) expect(g).toMatchObject({ lr: 1e-3, weightDecay: 0 });
    expect(() => models.clexParamGroups(m, { lr: Number.NaN })).toThrow(OpError);
    expect(() => models.clexParamGroups(m, { lr: 1e-3, weightDecay: -1 })).toThrow(
      /models\.clexParamGroups: weightDecay must be a finite number ≥ 0, got -1/,
    );
    expect(() => models.clexOdeLearningRate(tinyModel('llama', { type: 'clex', max_factor: 2 }).clex!, -1)).toThrow(
      /clexOdeLearningRate: lr must be/,
    );
  });

  it('bound one Adam step’s change of every log-frequency at every t by lr (the plain rate moves them far more)', async () => {
    const lr = 1e-3;
    const grouped = await oneStepChange((m, r) => models.clexParamGroups(m, { lr: r, weightDecay: 0.01 }), lr);
    const plain = await oneStepChange(() => null, lr);
    expect(grouped).toBeGreaterThan(0.1 * lr);
    expect(grouped).toBeLessThanOrEqual(lr * (1 + 1e-9));
    // λd·(max_factor − 1) = 8·3 = 24 hidden-unit contributions pushing the same way.
    expect(plain).toBeGreaterThan(8 * lr);
  });

  it('clip the ODE weights’ gradient and the rest’s separately, so the ODE’s large gradient does not shrink the model’s', async () => {
    const m = tinyModel('llama', { type: 'clex', max_factor: 4, ode_method: 'rk4', time_dt: 0.25 });
    const clex = m.clex!;
    m.train();
    await backwardAtSampledT(m);
    const odeSet = new Set(clex.parameters());
    const rest = m.parameters().filter((p) => !odeSet.has(p));
    const gradsOf = async (ps: typeof rest) => Promise.all(ps.map(async (p) => values(p.grad!)));
    const norm = (gs: number[][]) => Math.hypot(...gs.flat());
    const [restBefore, odeBefore] = [await gradsOf(rest), await gradsOf(clex.parameters())];
    const [nRest, nOde] = [norm(restBefore), norm(odeBefore)];
    // A max norm below both, so that each part is clipped (a global clip would scale both by maxNorm / ‖all‖).
    const maxNorm = 0.5 * Math.min(nRest, nOde);
    const out = models.clipClexGradNorm(m, maxNorm);
    expect(await out.rest.item()).toBeCloseTo(nRest, 9);
    expect(await out.ode!.item()).toBeCloseTo(nOde, 9);
    const [restAfter, odeAfter] = [await gradsOf(rest), await gradsOf(clex.parameters())];
    // clipGradNorm's factor is maxNorm / (‖g‖ + 1e-6), as torch.
    restAfter.flat().forEach((v, i) => expect(v).toBeCloseTo(restBefore.flat()[i] * (maxNorm / (nRest + 1e-6)), 12));
    expect(norm(odeAfter)).toBeCloseTo(maxNorm, 6);
    expect(() => models.clipClexGradNorm(m, -1)).toThrow(
      /models\.clipClexGradNorm: maxNorm must be a number ≥ 0, got -1/,
    );
    m.dispose();
  });
});
