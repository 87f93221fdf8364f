// Shared pieces of the model tests: tiny configs, cpu/webgpu model builders, and the directional
// derivative check for whole models.
import { manualSeed, models, nn, noGrad, randn, scope, tensor, type DeviceName, type Tensor } from '../index.js';

export type Kind = 'llama' | 'neox';
export type Scaling = null | (Partial<models.RopeScaling> & { type: models.RopeScalingType });

/** A small rope_scaling of each type (a Record, so a new type in models.ROPE_SCALING_TYPES needs one here). */
export const SCALING_OF: Record<models.RopeScalingType, Scaling> = {
  linear: { type: 'linear', factor: 2 },
  ntk: { type: 'ntk', factor: 2 },
  dynamic: { type: 'dynamic', factor: 2 },
  yarn: { type: 'yarn', factor: 4 },
  llama3: { type: 'llama3', factor: 4 },
  clex: { type: 'clex', max_factor: 4 },
};

/** Plain RoPE and every rope_scaling type. */
export const SCALINGS: [string, Scaling][] = [
  ['none', null],
  ...models.ROPE_SCALING_TYPES.map((t): [string, Scaling] => [t, SCALING_OF[t]]),
];

/** A tiny model: 2 layers, hidden 16, 2 heads of 8 (NeoX: rotary_pct 0.5 → 4 rotated dims), vocab 11, L0 = 8. */
export function tinyModel(
  kind: Kind,
  scaling: Scaling,
  opts: { device?: DeviceName; seed?: number; L0?: number; gqa?: boolean } = {},
): models.CausalLM {
  manualSeed(opts.seed ?? 1);
  const device = opts.device ?? 'cpu';
  const dtype = device === 'cpu' ? 'float64' : 'float32';
  const common = {
    vocab_size: 11,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: opts.L0 ?? 8,
    rope_scaling: scaling,
    initializer_range: 0.3,
  };
  const m =
    kind === 'llama'
      ? new models.LlamaForCausalLM(
          { ...common, intermediate_size: 24, num_key_value_heads: opts.gqa ? 1 : 2 },
          { device, dtype },
        )
      : new models.GPTNeoXForCausalLM({ ...common, intermediate_size: 24, rotary_pct: 0.5 }, { device, dtype });
  // Give the CLEX ODE a nonzero W_down so its network (not just the NTK drift) shapes the frequencies.
  if (m.clex) nn.init.normal(m.clex.proj_func.ode_down_proj, 0, 0.3);
  return m;
}

export function ids(rows: number[][], device: DeviceName = 'cpu'): Tensor {
  return tensor(rows.flat(), { dtype: 'int32', device, shape: [rows.length, rows[0].length] });
}

export async function values(t: Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

/** Copies one model's parameters into another (across devices; float64 → float32 on webgpu). */
export async function copyWeights(from: models.CausalLM, to: models.CausalLM): Promise<void> {
  const sd: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(from.stateDict()))
    sd[k] = tensor(Float64Array.from(await t.data()), { shape: t.shape, device: to.device, dtype: to.dtype });
  to.loadStateDict(sd);
  for (const t of Object.values(sd)) t.dispose();
}

/**
 * ⟨v, ∇f⟩ by autograd against [f(θ+εv) − f(θ−εv)]/2ε for a random direction v over every parameter
 * (cpu float64). `loss` must be deterministic given the parameters (reseed inside if it samples).
 */
export async function directionalCheck(
  model: models.CausalLM,
  loss: () => Promise<Tensor>,
  eps = 1e-6,
): Promise<{ analytic: number; numeric: number }> {
  const params = model.parameters();
  manualSeed(99);
  const dirs = params.map((p) => randn(p.shape, { dtype: 'float64', device: 'cpu' }));
  model.zeroGrad();
  await scope(async () => (await loss()).backwardAsync());
  let analytic = 0;
  for (let i = 0; i < params.length; i++) {
    const g = params[i].grad;
    if (!g) continue;
    const gd = await g.data(),
      vd = await dirs[i].data();
    for (let j = 0; j < gd.length; j++) analytic += gd[j] * vd[j];
  }
  const shift = (s: number) => noGrad(() => params.forEach((p, i) => p.copy_(p.add(dirs[i].mul(s)))));
  const evalAt = async (s: number) => {
    shift(s);
    const v = await noGrad(() => scope(async () => (await loss()).item()));
    shift(-s);
    return v;
  };
  const numeric = ((await evalAt(eps)) - (await evalAt(-eps))) / (2 * eps);
  model.zeroGrad();
  dirs.forEach((d) => d.dispose());
  return { analytic, numeric };
}
