// Tokenizers (byte-level: lossless on any UTF-8) and the training script's parameter groups.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { models } from '../index.js';
import { buildModel } from '../examples/lib/checkpoint.js';
import { parameterGroups } from '../examples/lib/trainer.js';

describe('ByteTokenizer', () => {
  const tok = new models.ByteTokenizer();

  it('round-trips any Unicode string through its UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        const ids = tok.encode(text);
        expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 256)).toBe(true);
        expect(ids.length).toBe(Buffer.byteLength(text, 'utf8'));
        expect(tok.decode(ids)).toBe(text);
      }),
    );
  });

  it('rejects ids outside 0..255 with the tokenizer named', () => {
    expect(() => tok.decode([65, 256])).toThrow(/ByteTokenizer\.decode: id 256 is outside the vocabulary \[0, 256\)/);
  });

  it('CharTokenizer round-trips printable ASCII and newlines', () => {
    const chars = new models.CharTokenizer();
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.constantFrom(
            ...'\n !~aZ09'.split(''),
            ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)),
          ),
        }),
        (text) => {
          expect(chars.decode(chars.encode(text))).toBe(text);
        },
      ),
    );
  });
});

describe('parameter groups of the train script', () => {
  const config = {
    model_type: 'llama',
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    max_position_embeddings: 8,
    rope_scaling: { type: 'clex' as const, max_factor: 2 },
  };

  it('decays weight matrices and embeddings only, never biases, norm weights or the CLEX ODE (its own rate)', () => {
    const model = buildModel({ ...config, model_type: 'gpt_neox', rotary_pct: 1 });
    const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
    const { groups, trainable } = parameterGroups(model, 1e-3, 0.1, false);
    const decayed = [...groups[0].params].map((p) => names.get(p)!);
    const plain = [...groups[1].params].map((p) => names.get(p)!);
    const ode = [...groups[2].params].map((p) => names.get(p)!);
    expect(groups.map((g) => g.weightDecay)).toEqual([0.1, 0, 0]);
    expect(groups[2].lr).toBeCloseTo(models.clexOdeLearningRate(model.clex!, 1e-3), 12);
    expect(ode.every((n) => n.includes('clex_layer'))).toBe(true);
    expect(decayed.length).toBeGreaterThan(0);
    expect(decayed.every((n) => n.endsWith('.weight') && !/norm|clex_layer/.test(n))).toBe(true);
    expect(plain.some((n) => n.endsWith('.bias'))).toBe(true);
    expect(plain.some((n) => /layernorm|norm/.test(n))).toBe(true);
    expect(ode).toHaveLength(2);
    expect(plain.filter((n) => n.includes('clex_layer'))).toHaveLength(0);
    expect(trainable).toHaveLength(model.parameters().length);
    model.dispose();
  });

  it('--clex-freeze-ode leaves the ODE weights out of the optimizer', () => {
    const model = buildModel(config);
    const { groups, trainable } = parameterGroups(model, 1e-3, 0.1, true);
    const ode = model
      .namedParameters()
      .filter(([n]) => n.includes('clex_layer'))
      .map(([, p]) => p);
    expect(ode).toHaveLength(2);
    expect(ode.some((p) => trainable.includes(p) || groups.some((g) => [...g.params].includes(p)))).toBe(false);
    expect(trainable).toHaveLength(model.parameters().length - 2);
    model.dispose();
  });
});
