// The fused transformer ops free every intermediate they allocate (contiguous copies, saved
// logsumexps, norm statistics) once the step's scope closes and backward has run.
import { describe, expect, it } from 'vitest';
import { functional as F, manualSeed, memory, randint, randn, scope, type Tensor } from '../index.js';

describe('transformer ops memory', () => {
  for (const device of ['cpu', 'webgpu'] as const) {
    it(`forward + backward of every op leaves no tensor or buffer behind (${device})`, () => {
      manualSeed(14);
      const g = { device, requiresGrad: true } as const;
      const x = randn([4, 8], g),
        w = randn([8], g),
        b = randn([8], g),
        t = randint(0, 8, [4], { device });
      const q = randn([1, 2, 4, 8], g),
        k = randn([1, 1, 4, 8], g),
        cs = randn([4, 8], g),
        sn = randn([4, 8], g);
      const ids = randint(0, 4, [3], { device });
      const leaves = [x, w, b, q, k, cs, sn];
      const step = () => {
        scope(() => {
          const outs: Tensor[] = [
            F.softmax(x, 0),
            F.logSoftmax(x.transpose(0, 1)),
            F.logsumexp(x, [0, 1]),
            F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
            F.layerNorm(x, w, b),
            F.rmsNorm(x, w),
            F.applyRotary(q, cs, sn),
            ...Object.values(F.addLayerNorm(x, x.exp(), w, b)),
            ...Object.values(F.addRmsNorm(x.mul(2), x, w)),
            F.scaledDotProductAttention(q, k, k, { causal: true, dropoutP: 0.1 }),
            F.gelu(x, { approximate: 'tanh' }),
            F.swiglu(x, b),
            F.dropout(x, 0.2),
            F.embedding(ids, x),
          ];
          outs
            .map((o) => o.sum())
            .reduce((a, c) => a.add(c))
            .backward();
        });
        for (const l of leaves) l.grad = null;
      };
      step();
      const before = memory();
      for (let i = 0; i < 5; i++) step();
      const after = memory();
      expect(after.liveTensors).toBe(before.liveTensors);
      expect(after.liveBuffers).toBe(before.liveBuffers);
      expect(after.liveBytes).toBe(before.liveBytes);
      [...leaves, t, ids].forEach((l) => l.dispose());
    });
  }
});
