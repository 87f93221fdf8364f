// The state of incremental decoding: the keys and values of the tokens so far (the KV cache), their
// token ids, the rotary table of the current step and the policy for a step whose table differs from
// the one the cached keys were made with. A model's forward asks it for each step's plan (step()) and
// its attention layers append to it (update()); generate() makes one per call, and users may pass
// their own (`model.forward(ids, { cache })`). `KVCache` is the same class under its older name.
//
// Static RoPE rules rotate each stored key once. For length-dependent rules (dynamic NTK, CLEX) the
// table changes with the total length (for CLEX when t = ceil(L/L0) crosses an integer; for dynamic
// NTK every step past L0), and so does the queries' scale with log_scale past L0; a full forward at
// length L uses the table and scale of L everywhere. Re-rotating the stored keys (the reference CLEX
// code's approach) fixes the rotation in every layer, but the hidden states of earlier tokens in
// layers ≥ 1 were computed with the old table, so the result only approximates a full forward.
// Two policies:
//   'recompute' (default): when the table or the query scale changes, the step re-runs every token so
//     far and refills the cache: exactly a full forward. For CLEX this costs max_factor extra prefills
//     at most; for dynamic NTK (or log_scale) past L0 it is one full forward per step.
//   'rerotate': keep un-rotated keys and rotate them all again at each table change (cheaper, approximate).
// The state holds detached tensors it owns; use it under noGrad (generate() does).
import type { DeviceName } from '../core/backend.js';
import type { DType } from '../core/dtype.js';
import { untrackTensor } from '../core/scope.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { cat } from '../ops/movement.js';
import { queryLogScale } from './config.js';
import { rotateRows, sameFrequencies, type RotaryEmbedding, type RotaryTables } from './rope-scaling.js';

export type TableChangePolicy = 'recompute' | 'rerotate';

/** What a decoding step needs of the model (a CausalLM has it). */
export interface DecodingModel {
  readonly rotary: RotaryEmbedding;
  readonly device: DeviceName;
  readonly dtype: DType;
  /** The reference CLEX's log_scale: queries × log(L)/log(L0) past L0. */
  readonly logScale: boolean;
}

/** One step's forward: the tokens to run and the table for every position so far. */
export interface DecodeStep {
  /** The new tokens [B, T], or every token so far [B, L] when the cache is recomputed. */
  ids: Tensor;
  /** Rows 0..L−1 of the table at the total length L. */
  rope: RotaryTables;
}

interface LayerEntry {
  /** Rotated keys [B, Hkv, L, D], as attention uses them. */
  k: Tensor;
  v: Tensor;
  /** Un-rotated keys ('rerotate' with a length-dependent rule only). */
  raw: Tensor | null;
}

export class DecodeState {
  private readonly layers: (LayerEntry | null)[];
  /** All token ids so far [B, L] (what 'recompute' re-runs). */
  private tokens: Tensor | null = null;
  /** The current step's table; the cached keys are rotated with it once the step's forward ran. */
  private table: RotaryTables | null = null;
  /** The current step's query scale (log_scale). */
  private queryScale = 1;
  /** The rotated dims of each head (the rotary table's width). */
  private rotaryDim = 0;
  /** Whether layers keep their un-rotated keys (a length-dependent rule under 'rerotate'). */
  private keepRaw = false;
  /** Set by a step whose table changed under 'rerotate': each layer rotates its raw keys again. */
  private rerotating = false;
  /** Re-rotations of the whole cache ('rerotate'), counted once per step; for tests and stats. */
  rerotations = 0;
  /** Full recomputations ('recompute'); for tests and stats. */
  recomputes = 0;

  constructor(
    readonly numLayers: number,
    readonly policy: TableChangePolicy = 'recompute',
  ) {
    if (policy !== 'recompute' && policy !== 'rerotate')
      throw new OpError('DecodeState', `policy must be 'recompute' or 'rerotate', got '${String(policy)}'`);
    this.layers = Array.from({ length: numLayers }, () => null);
  }

  /** Tokens stored so far. */
  get length(): number {
    return this.layers[0]?.k.shape[2] ?? 0;
  }

  /**
   * One layer's stored keys (rotated) and values [B, Hkv, L, D], in the dtype the model computes in (a
   * float16 model keeps a float16 cache); null before the layer's first step. The state's own tensors:
   * read them, do not dispose them.
   */
  cached(layer: number): { k: Tensor; v: Tensor } | null {
    const e = this.layers[layer];
    return e ? { k: e.k, v: e.v } : null;
  }

  /**
   * Plans the forward of new tokens ids [B, T]: builds the table at the total length, records the ids
   * and, when the table or query scale differs from the cached keys' and the policy is 'recompute',
   * empties the cache and returns every token so far to run again.
   */
  async step(ids: Tensor, model: DecodingModel): Promise<DecodeStep> {
    const past = this.length;
    const length = past + ids.shape[1];
    const rope = await model.rotary.forward({ length, device: model.device, dtype: model.dtype, training: false });
    const queryScale = queryLogScale(model.logScale, length, model.rotary.L0);
    const tableChanged = past > 0 && this.table !== null && !sameFrequencies(this.table.frequencies, rope.frequencies);
    const recompute = this.policy === 'recompute' && past > 0 && (tableChanged || queryScale !== this.queryScale);
    this.rerotating = this.policy === 'rerotate' && tableChanged;
    if (this.rerotating) this.rerotations++;
    this.keepRaw = this.policy === 'rerotate' && model.rotary.lengthDependent;
    this.rotaryDim = model.rotary.dim;
    this.table = rope;
    this.queryScale = queryScale;
    const all = this.tokens ? cat([this.tokens, ids], 1) : ids.detach();
    untrackTensor(all);
    this.tokens?.dispose();
    this.tokens = all;
    if (!recompute) return { ids, rope };
    this.clearLayers();
    this.recomputes++;
    return { ids: all, rope };
  }

  /**
   * Appends this step's keys (un-rotated) and values for one layer and returns the keys/values to
   * attend over, rotated with the step's table.
   */
  update(layer: number, kNew: Tensor, vNew: Tensor): { k: Tensor; v: Tensor } {
    if (layer < 0 || layer >= this.numLayers)
      throw new OpError('DecodeState.update', `layer ${layer} is out of range for ${this.numLayers} layers`);
    const rope = this.table;
    if (!rope)
      throw new OpError(
        'DecodeState.update',
        'no step is under way: pass the state to the model (forward(ids, { cache })), which calls step() first',
      );
    const prev = this.layers[layer];
    const past = prev?.k.shape[2] ?? 0;
    const T = kNew.shape[2];
    if (
      prev &&
      (prev.k.shape[0] !== kNew.shape[0] || prev.k.shape[1] !== kNew.shape[1] || prev.k.shape[3] !== kNew.shape[3])
    ) {
      throw new OpError(
        'DecodeState.update',
        `new keys ${shapeStr(kNew.shape)} do not match the cached ${shapeStr(prev.k.shape)}`,
      );
    }
    if (rope.rows !== past + T)
      throw new OpError(
        'DecodeState.update',
        `the rotary table has ${rope.rows} rows but the cache holds ${past} + ${T} positions`,
      );
    const rotate = (k: Tensor, start: number) => rotateRows(k, rope, start, this.rotaryDim);
    const own = (t: Tensor) => {
      const d = t.detach();
      untrackTensor(d);
      return d;
    };
    const raw = !this.keepRaw ? null : prev ? cat([prev.raw as Tensor, kNew], 2) : kNew;
    const k = !prev
      ? rotate(kNew, 0)
      : this.rerotating
        ? rotate(raw as Tensor, 0)
        : cat([prev.k, rotate(kNew, past)], 2);
    const v = prev ? cat([prev.v, vNew], 2) : vNew;
    const entry: LayerEntry = { k: own(k), v: own(v), raw: raw && own(raw) };
    if (prev) for (const t of [prev.k, prev.v, prev.raw]) t?.dispose();
    this.layers[layer] = entry;
    return { k, v };
  }

  private clearLayers(): void {
    for (const e of this.layers) if (e) for (const t of [e.k, e.v, e.raw]) t?.dispose();
    this.layers.fill(null);
  }

  /** Frees every stored tensor; the state is empty afterwards. */
  clear(): void {
    this.clearLayers();
    this.tokens?.dispose();
    this.tokens = null;
    this.table = null;
    this.queryScale = 1;
  }

  dispose(): void {
    this.clear();
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}

/** The decoding state under its older name (the same class). */
export { DecodeState as KVCache };
