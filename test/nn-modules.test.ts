// nn: module registration and naming, state dicts, device moves, layers against plain-JS references,
// initialisers, dropout, and a directional-derivative check through a module.
import { describe, expect, it } from 'vitest';
import { manualSeed, memory, nn, noGrad, randint, randn, scope, tensor, type Tensor } from '../index.js';

const F = nn.functional;
const cpu64 = { device: 'cpu' as const, dtype: 'float64' as const };

class Attention extends nn.Module {
  readonly q_proj: nn.Linear;
  readonly o_proj: nn.Linear;
  constructor(d: number) {
    super();
    this.q_proj = this.module('q_proj', new nn.Linear(d, d, { bias: false, ...cpu64 }));
    this.o_proj = this.module('o_proj', new nn.Linear(d, d, cpu64));
  }
  forward(x: Tensor): Tensor {
    return this.o_proj.call(this.q_proj.call(x).tanh());
  }
}

class Block extends nn.Module {
  readonly self_attn: Attention;
  readonly input_layernorm: nn.RMSNorm;
  constructor(d: number) {
    super();
    this.input_layernorm = this.module('input_layernorm', new nn.RMSNorm(d, cpu64));
    this.self_attn = this.module('self_attn', new Attention(d));
  }
  forward(x: Tensor): Tensor {
    return x.add(this.self_attn.call(this.input_layernorm.call(x)));
  }
}

class Tiny extends nn.Module {
  readonly embed_tokens: nn.Embedding;
  readonly layers: nn.ModuleList<Block>;
  readonly dropout = this.module('dropout', new nn.Dropout(0.5));
  readonly inv_freq: Tensor;
  constructor(vocab = 7, d = 4, n = 2) {
    super();
    this.embed_tokens = this.module('embed_tokens', new nn.Embedding(vocab, d, cpu64));
    this.layers = this.module('layers', new nn.ModuleList(Array.from({ length: n }, () => new Block(d))));
    this.inv_freq = this.buffer('inv_freq', tensor([1, 0.5], cpu64), { persistent: false });
  }
  forward(ids: Tensor): Tensor {
    let h = this.embed_tokens.call(ids);
    for (const layer of this.layers) h = layer.call(h);
    return h;
  }
}

describe('Module', () => {
  it('names parameters with dotted HF-style paths in declaration order', () => {
    manualSeed(0);
    const m = new Tiny();
    expect(m.namedParameters().map(([n]) => n)).toEqual([
      'embed_tokens.weight',
      'layers.0.input_layernorm.weight',
      'layers.0.self_attn.q_proj.weight',
      'layers.0.self_attn.o_proj.weight',
      'layers.0.self_attn.o_proj.bias',
      'layers.1.input_layernorm.weight',
      'layers.1.self_attn.q_proj.weight',
      'layers.1.self_attn.o_proj.weight',
      'layers.1.self_attn.o_proj.bias',
    ]);
    expect(m.numParameters()).toBe(7 * 4 + 2 * (4 + 16 + 16 + 4));
    expect(m.parameters().every((p) => p.requiresGrad && p.isLeaf)).toBe(true);
    expect(Object.keys(m.stateDict())).not.toContain('inv_freq'); // non-persistent buffer
    expect(m.namedBuffers().map(([n]) => n)).toEqual(['inv_freq']);
    m.dispose();
  });

  it('train()/eval() reach every submodule; zeroGrad clears gradients', async () => {
    const m = new Tiny();
    m.eval();
    expect([...m.namedModules()].every(([, s]) => !s.training)).toBe(true);
    m.train();
    expect(m.dropout.training).toBe(true);
    const loss = m
      .call(tensor([[1, 2, 3]], { dtype: 'int32', device: 'cpu' }))
      .square()
      .sum();
    loss.backward();
    expect(m.parameters().every((p) => p.grad !== null)).toBe(true);
    m.zeroGrad();
    expect(m.parameters().every((p) => p.grad === null)).toBe(true);
    m.dispose();
  });

  it('stateDict → loadStateDict copies values in place; errors list missing, unexpected and wrong-shape keys', async () => {
    manualSeed(1);
    const a = new Tiny();
    manualSeed(2);
    const b = new Tiny();
    const weightBefore = b.layers.at(1).self_attn.q_proj.weight;
    b.loadStateDict(a.stateDict());
    expect(b.layers.at(1).self_attn.q_proj.weight).toBe(weightBefore); // same tensor object, new values
    for (const [name, t] of Object.entries(a.stateDict()))
      expect(Array.from(await b.stateDict()[name].data())).toEqual(Array.from(await t.data()));

    const sd = { ...a.stateDict() };
    delete sd['layers.0.self_attn.o_proj.bias'];
    sd['lm_head.weight'] = tensor([1], cpu64);
    sd['embed_tokens.weight'] = tensor([[1, 2]], cpu64);
    const c = new Tiny();
    const snapshot = Array.from(await c.layers.at(0).input_layernorm.weight.data());
    let message = '';
    try {
      c.loadStateDict(sd);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/missing keys: layers\.0\.self_attn\.o_proj\.bias/);
    expect(message).toMatch(/unexpected keys: lm_head\.weight/);
    expect(message).toMatch(/embed_tokens\.weight: checkpoint \[1, 2\] vs model \[7, 4\]/);
    expect(Array.from(await c.layers.at(0).input_layernorm.weight.data())).toEqual(snapshot); // nothing written
    delete sd['embed_tokens.weight'];
    const res = c.loadStateDict(sd, { strict: false });
    expect(res).toEqual({
      missingKeys: ['embed_tokens.weight', 'layers.0.self_attn.o_proj.bias'],
      unexpectedKeys: ['lm_head.weight'],
    });
    [a, b, c].forEach((m) => m.dispose());
  });

  it('loadStateDict refuses tensors on a device read asynchronously for parameters elsewhere (before writing any)', async () => {
    manualSeed(4);
    const onCpu = new nn.Linear(2, 3, cpu64);
    const before = Array.from(await onCpu.bias!.data());
    const sd = { weight: randn([3, 2], { dtype: 'float64', device: 'cpu' }), bias: randn([3], { device: 'webgpu' }) };
    expect(() => onCpu.loadStateDict(sd)).toThrow(
      /tensors read asynchronously, for parameters on another device \(move them there with toAsync\(device\) first\): bias \(webgpu → cpu\)/,
    );
    expect(Array.from(await onCpu.bias!.data())).toEqual(before);
    onCpu.loadStateDict({ ...sd, bias: await sd.bias.toAsync('cpu') });
    expect(Array.from(await onCpu.weight.data())).toEqual(Array.from(await sd.weight.data()));
    onCpu.dispose();
  });

  it('to(device) moves parameters, keeps field references in step, and gives the same outputs', async () => {
    manualSeed(3);
    const m = new nn.Sequential(new nn.Linear(3, 5), new nn.GELU(), new nn.Linear(5, 2));
    const x = randn([4, 3]);
    const onGpu = await m.call(x).data();
    const xc = await x.toAsync('cpu');
    await m.toAsync('cpu');
    expect(m.parameters().every((p) => p.device === 'cpu' && p.requiresGrad)).toBe(true);
    expect((m.at(0) as nn.Linear).weight).toBe(m.parameters()[0]);
    const onCpu = await m.call(xc).data();
    onCpu.forEach((v, i) => expect(v).toBeCloseTo(onGpu[i], 5));
    m.to('webgpu');
    expect((m.at(2) as nn.Linear).bias!.device).toBe('webgpu');
    const again = await m.call(x).data();
    again.forEach((v, i) => expect(v).toBeCloseTo(onGpu[i], 6));
    m.dispose();
  });

  it('modules own their parameters: creating one inside a scope does not free them', async () => {
    const m = scope(() => new nn.Linear(2, 2));
    expect(m.parameters().every((p) => !p.isDisposed)).toBe(true);
    const before = memory().liveTensors;
    m.dispose();
    expect(memory().liveTensors).toBe(before - 2);
  });

  it('each parameter carries the role its layer declared (weight by default), listed once in namedParameters order', () => {
    manualSeed(0);
    class Shared extends nn.Module {
      readonly gain: Tensor;
      readonly tiny = this.module('tiny', new Tiny(7, 4, 1));
      readonly ln = this.module('ln', new nn.LayerNorm(4, cpu64));
      constructor() {
        super();
        this.gain = this.param('gain', tensor([1, 1, 1, 1], cpu64), { role: 'norm' });
        this.module('again', this.tiny.embed_tokens); // shared: keeps its first registration
      }
      forward(x: Tensor) {
        return x;
      }
    }
    const m = new Shared();
    const names = new Map(m.namedParameters().map(([n, p]) => [p, n]));
    expect([...m.parameterRoles()].map(([p, role]) => [names.get(p), role])).toEqual([
      ['gain', 'norm'],
      ['tiny.embed_tokens.weight', 'embedding'],
      ['tiny.layers.0.input_layernorm.weight', 'norm'],
      ['tiny.layers.0.self_attn.q_proj.weight', 'weight'],
      ['tiny.layers.0.self_attn.o_proj.weight', 'weight'],
      ['tiny.layers.0.self_attn.o_proj.bias', 'bias'],
      ['ln.weight', 'norm'],
      ['ln.bias', 'bias'],
    ]);
    m.dispose();
  });

  it('rejects duplicate or dotted names', () => {
    class Bad extends nn.Module {
      constructor(name: string) {
        super();
        this.param('w', tensor([1]));
        this.param(name, tensor([1]));
      }
      forward(x: Tensor) {
        return x;
      }
    }
    expect(() => new Bad('w')).toThrow(/'w' is already registered/);
    expect(() => new Bad('a.b')).toThrow(/invalid name 'a\.b'/);
  });
});

describe('layers', () => {
  it('Linear: weight [out, in], y = x Wᵀ + b, default init within ±1/√in', async () => {
    manualSeed(4);
    const lin = new nn.Linear(3, 2, cpu64);
    expect(lin.weight.shape).toEqual([2, 3]);
    const W = (await lin.weight.toArray()) as number[][];
    const b = (await lin.bias!.toArray()) as number[];
    [...W.flat(), ...b].forEach((v) => expect(Math.abs(v)).toBeLessThanOrEqual(1 / Math.sqrt(3)));
    const x = [
      [1, -2, 0.5],
      [0, 1, 2],
    ];
    const y = (await lin.call(tensor(x, cpu64)).toArray()) as number[][];
    x.forEach((row, i) =>
      W.forEach((w, o) =>
        expect(y[i][o]).toBeCloseTo(
          row.reduce((s, v, k) => s + v * w[k], b[o]),
          12,
        ),
      ),
    );
    expect(() => lin.call(tensor([[1, 2]], cpu64))).toThrow(
      /linear: input \[1, 2\] has last dim 2 but weight \[2, 3\] expects 3/,
    );
    expect(new nn.Linear(3, 2, { bias: false }).bias).toBeNull();
  });

  it('Embedding picks rows for ids of any shape', async () => {
    const emb = new nn.Embedding(5, 3, cpu64);
    const W = (await emb.weight.toArray()) as number[][];
    const ids = [
      [4, 0],
      [2, 2],
    ];
    const out = (await emb.call(tensor(ids, { dtype: 'int32', device: 'cpu' })).toArray()) as number[][][];
    expect(out).toEqual(ids.map((r) => r.map((i) => W[i])));
  });

  it('LayerNorm and RMSNorm match plain-JS formulas', async () => {
    const rows = [
      [1, 2, 4, -1],
      [0.5, 0.5, 3, 2],
    ];
    const ln = new nn.LayerNorm(4, cpu64);
    const rms = new nn.RMSNorm(4, { ...cpu64, eps: 1e-6 });
    nn.init.uniform(ln.weight!, 0.5, 1.5);
    nn.init.uniform(ln.bias!, -1, 1);
    nn.init.uniform(rms.weight, 0.5, 1.5);
    const [lw, lb, rw] = await Promise.all([ln.weight!.data(), ln.bias!.data(), rms.weight.data()]);
    const x = tensor(rows, cpu64);
    const yl = (await ln.call(x).toArray()) as number[][];
    const yr = (await rms.call(x).toArray()) as number[][];
    rows.forEach((r, i) => {
      const mean = r.reduce((a, b) => a + b) / 4;
      const v = r.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      const ms = r.reduce((a, b) => a + b * b, 0) / 4;
      r.forEach((val, j) => {
        expect(yl[i][j]).toBeCloseTo(((val - mean) / Math.sqrt(v + 1e-5)) * lw[j] + lb[j], 12);
        expect(yr[i][j]).toBeCloseTo((val / Math.sqrt(ms + 1e-6)) * rw[j], 12);
      });
    });
  });

  it('LayerNorm over several trailing dims normalises them jointly', async () => {
    const ln = new nn.LayerNorm([2, 2], cpu64);
    nn.init.uniform(ln.weight!, 0.5, 1.5);
    const w = await ln.weight!.data();
    const xs = [
      [
        [1, 2],
        [3, 5],
      ],
      [
        [-1, 0],
        [0, 4],
      ],
    ];
    const y = (await ln.call(tensor(xs, cpu64)).toArray()) as number[][][];
    xs.forEach((m, b) => {
      const flat = m.flat();
      const mean = flat.reduce((a, c) => a + c) / 4;
      const v = flat.reduce((a, c) => a + (c - mean) ** 2, 0) / 4;
      flat.forEach((val, j) =>
        expect(y[b][Math.floor(j / 2)][j % 2]).toBeCloseTo(((val - mean) / Math.sqrt(v + 1e-5)) * w[j], 12),
      );
    });
    expect(() => ln.call(tensor([[1, 2, 3]], cpu64))).toThrow(/does not end with normalized shape \[2, 2\]/);
  });

  it('activations match their tensor ops; GELU tanh approximation matches its formula', async () => {
    const x = tensor([-2, -0.5, 0, 0.7, 3], cpu64);
    const xs = [-2, -0.5, 0, 0.7, 3];
    const tanhGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    expect(
      Array.from(await new nn.GELU('tanh').call(x).data())
        .map((v, i) => v - tanhGelu(xs[i]))
        .every((d) => Math.abs(d) < 1e-12),
    ).toBe(true);
    expect(Array.from(await new nn.ReLU().call(x).data())).toEqual(xs.map((v) => Math.max(v, 0)));
    expect(
      Array.from(await new nn.Sigmoid().call(x).data()).every(
        (v, i) => Math.abs(v - 1 / (1 + Math.exp(-xs[i]))) < 1e-12,
      ),
    ).toBe(true);
    expect(
      Array.from(await new nn.SiLU().call(x).data()).every(
        (v, i) => Math.abs(v - xs[i] / (1 + Math.exp(-xs[i]))) < 1e-12,
      ),
    ).toBe(true);
    expect(Array.from(await new nn.Tanh().call(x).data()).every((v, i) => Math.abs(v - Math.tanh(xs[i])) < 1e-12)).toBe(
      true,
    );
  });

  it('Dropout: identity in eval; in training zeroes about p and rescales the rest by 1/(1-p); seeded', async () => {
    const d = new nn.Dropout(0.3);
    const x = randn([4000], { device: 'cpu' }).add(5);
    d.eval();
    expect(d.call(x)).toBe(x);
    d.train();
    manualSeed(9);
    const y = await d.call(x).data();
    const xv = await x.data();
    const zeros = y.filter((v) => v === 0).length / y.length;
    expect(zeros).toBeGreaterThan(0.26);
    expect(zeros).toBeLessThan(0.34);
    y.forEach((v, i) => {
      if (v !== 0) expect(v).toBeCloseTo(xv[i] / 0.7, 5);
    });
    manualSeed(9);
    expect(Array.from(await d.call(x).data())).toEqual(Array.from(y));
  });

  it('a module passes a directional-derivative check over all its parameters (cpu float64)', async () => {
    manualSeed(5);
    const block = new Block(4);
    const x = randn([3, 4], cpu64);
    const f = () => block.call(x).tanh().sum();
    const loss = f();
    loss.backward();
    const params = block.parameters();
    const dirs = params.map((p) => randn(p.shape, cpu64));
    let analytic = 0;
    for (let k = 0; k < params.length; k++) {
      const [g, v] = await Promise.all([params[k].grad!.data(), dirs[k].data()]);
      g.forEach((gi, i) => {
        analytic += gi * v[i];
      });
    }
    const eps = 1e-6;
    const shift = (s: number) => noGrad(() => params.forEach((p, k) => p.copy_(p.add(dirs[k].mul(s)))));
    shift(eps);
    const plus = await noGrad(f).item();
    shift(-2 * eps);
    const minus = await noGrad(f).item();
    shift(eps);
    const numeric = (plus - minus) / (2 * eps);
    expect(Math.abs(analytic - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(analytic)));
    block.dispose();
  });
});

describe('init', () => {
  it('is seeded, fills in place, and respects the torch bounds', async () => {
    const t = tensor(new Float64Array(600), { shape: [20, 30], ...cpu64 });
    manualSeed(11);
    nn.init.xavierUniform(t);
    const a = Array.from(await t.data());
    const bound = Math.sqrt(6 / 50);
    expect(a.every((v) => Math.abs(v) <= bound)).toBe(true);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    manualSeed(11);
    nn.init.xavierUniform(t);
    expect(Array.from(await t.data())).toEqual(a);
    nn.init.kaimingUniform(t, { nonlinearity: 'relu' });
    expect(Math.max(...Array.from(await t.data()).map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(2) * Math.sqrt(3 / 30));
    nn.init.normal(t, 2, 0.5);
    const n = Array.from(await t.data());
    const mean = n.reduce((s, v) => s + v) / n.length;
    expect(mean).toBeGreaterThan(1.9);
    expect(mean).toBeLessThan(2.1);
    nn.init.zeros(t);
    expect(Array.from(await t.data()).every((v) => v === 0)).toBe(true);
    const g = randn([3, 4]);
    nn.init.ones(g);
    expect(Array.from(await g.data()).every((v) => v === 1)).toBe(true);
    expect(() => nn.init.xavierUniform(tensor([1, 2]))).toThrow(/at least 2 dims/);
  });

  it('Embedding ids may be any int32 tensor shape and out-of-range ids are rejected', () => {
    const emb = new nn.Embedding(4, 2, cpu64);
    expect(emb.call(randint(0, 4, [2, 3, 5], { device: 'cpu' })).shape).toEqual([2, 3, 5, 2]);
    expect(() => emb.call(tensor([7], { dtype: 'int32', device: 'cpu' }))).toThrow(/out of range/);
    expect(() => F.embedding(tensor([1.5], cpu64), emb.weight)).toThrow(/ids must be int32/);
  });
});
