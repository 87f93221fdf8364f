// Key/value cache for incremental decoding. For static RoPE rules the stored keys are rotated once.
// For length-dependent rules (dynamic NTK, CLEX) the frequency table changes with the total length
// (for CLEX when t = ceil(L/L0) crosses an integer; for dynamic NTK every step past L0), and a full
// forward at length L uses the table of L everywhere. Re-rotating the stored keys (the reference
// CLEX code's approach) fixes the rotation in every layer, but the hidden states of earlier tokens in
// layers ≥ 1 were computed with the old table, so the result only approximates a full forward.
// Two policies:
//   'recompute' (default): when the table changes, the forward re-runs over all tokens so far (the
//     cache keeps the token ids) and refills the cache: exactly a full forward. For CLEX this costs
//     max_factor extra prefills at most; for dynamic NTK past L0 it is one full forward per step.
//   'rerotate': keep un-rotated keys and rotate them all again at each change (cheaper, approximate).
// The cache holds detached tensors it owns; use it under noGrad (generate() does).
import { applyRotary } from '../ops/rotary/index.js';
import { untrackTensor } from '../core/scope.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { cat } from '../ops/movement.js';
import type { RotaryTables } from './rope-scaling.js';

interface LayerEntry {
  /** Rotated keys [B, Hkv, T, D], as used by attention. */
  k: Tensor;
  v: Tensor;
  /** Un-rotated keys (length-dependent rules only). */
  raw: Tensor | null;
  /** The table key k was rotated with. */
  key: string;
}

export type TableChangePolicy = 'recompute' | 'rerotate';

export class KVCache {
  private readonly layers: (LayerEntry | null)[];
  /** All token ids so far [B, L] (for 'recompute'). */
  private tokens: Tensor | null = null;
  /** The rotary table key the cached keys were made with. */
  private tableKey: string | null = null;
  /** Re-rotations of the whole cache ('rerotate'), counted once per step; for tests and stats. */
  rerotations = 0;
  /** Full recomputations ('recompute'); for tests and stats. */
  recomputes = 0;

  constructor(readonly numLayers: number, readonly policy: TableChangePolicy = 'recompute') {
    if (policy !== 'recompute' && policy !== 'rerotate') throw new OpError('KVCache', `policy must be 'recompute' or 'rerotate', got '${String(policy)}'`);
    this.layers = Array.from({ length: numLayers }, () => null);
  }

  /** Whether this step's table differs from the cached keys' and the policy asks for a full recompute. */
  needsRecompute(key: string, lengthDependent: boolean): boolean {
    return this.policy === 'recompute' && lengthDependent && this.length > 0 && this.tableKey !== key;
  }

  /** The token ids cached so far, [B, L] (null when empty). */
  get cachedTokens(): Tensor | null {
    return this.tokens;
  }

  /** Records the ids of this step (called by the model after a forward). */
  appendTokens(ids: Tensor, key: string): void {
    const all = this.tokens ? cat([this.tokens, ids], 1) : ids.detach();
    untrackTensor(all);
    this.tokens?.dispose();
    this.tokens = all;
    this.tableKey = key;
  }

  /** Tokens stored so far. */
  get length(): number {
    return this.layers[0]?.k.shape[2] ?? 0;
  }

  /**
   * Appends this step's keys (un-rotated) and values for one layer and returns the keys/values to
   * attend over. `rope` holds rows 0..L−1 of the current table (L = cached + new).
   */
  update(layer: number, kNew: Tensor, vNew: Tensor, rope: RotaryTables, rotaryDim: number, lengthDependent: boolean): { k: Tensor; v: Tensor } {
    if (layer < 0 || layer >= this.numLayers) throw new OpError('KVCache.update', `layer ${layer} is out of range for ${this.numLayers} layers`);
    const prev = this.layers[layer];
    const past = prev?.k.shape[2] ?? 0;
    const T = kNew.shape[2];
    if (prev && (prev.k.shape[0] !== kNew.shape[0] || prev.k.shape[1] !== kNew.shape[1] || prev.k.shape[3] !== kNew.shape[3])) {
      throw new OpError('KVCache.update', `new keys ${shapeStr(kNew.shape)} do not match the cached ${shapeStr(prev.k.shape)}`);
    }
    if (rope.cos.shape[0] !== past + T) throw new OpError('KVCache.update', `the rotary table has ${rope.cos.shape[0]} rows but the cache holds ${past} + ${T} positions`);
    const rows = (start: number, n: number) => [rope.cos.narrow(0, start, n), rope.sin.narrow(0, start, n)] as const;
    const rotate = (k: Tensor, start: number) => {
      const [c, s] = rows(start, k.shape[2]);
      return applyRotary(k, c, s, { rotaryDim });
    };
    const own = (t: Tensor) => {
      const d = t.detach();
      untrackTensor(d);
      return d;
    };
    let k: Tensor;
    let raw: Tensor | null = null;
    if (!prev) {
      k = rotate(kNew, 0);
      if (lengthDependent && this.policy === 'rerotate') raw = kNew;
    } else if (!lengthDependent || this.policy === 'recompute') {
      k = cat([prev.k, rotate(kNew, past)], 2);
    } else {
      raw = cat([prev.raw as Tensor, kNew], 2);
      if (prev.key === rope.key) k = cat([prev.k, rotate(kNew, past)], 2);
      else {
        k = rotate(raw, 0);
        if (layer === 0) this.rerotations++;
      }
    }
    const v = prev ? cat([prev.v, vNew], 2) : vNew;
    const entry: LayerEntry = { k: own(k), v: own(v), raw: raw && own(raw), key: rope.key };
    if (prev) for (const t of [prev.k, prev.v, prev.raw]) t?.dispose();
    this.layers[layer] = entry;
    return { k, v };
  }

  /** Frees every stored tensor; the cache is empty afterwards. */
  clear(): void {
    for (const e of this.layers) if (e) for (const t of [e.k, e.v, e.raw]) t?.dispose();
    this.layers.fill(null);
    this.tokens?.dispose();
    this.tokens = null;
    this.tableKey = null;
  }

  dispose(): void {
    this.clear();
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}
