// The RoPE scaling family's frequency schedules and the cos/sin tables they give (the rotation itself
// is ops/rotary): none, linear (PI), ntk (NTK-aware), dynamic (dynamic NTK), yarn, llama3 (Llama
// 3.1's banded rule), clex. RotaryEmbedding hands out tables [L, R] (R = rotary dim, HF layout
// emb = concat(freqs, freqs)) for the positions of one forward; all layers share them.
//
// Static rules compute inverse frequencies and angles in doubles on the host and upload one table per
// rule, cached and grown by doubling, so a forward costs a view (no upload, no dispatch). CLEX's
// frequencies from the device solve (training, or a graph to the ODE weights) are no table: the rows
// hand θ and their positions to the rotary kernels, which compute cos/sin themselves and reduce dθ in
// their backward. Rules whose frequencies depend on the current length (dynamic NTK, CLEX at inference)
// give each table the state it was made in (FrequencyState); the decoding state compares them to tell
// when its cached keys were made with another table (decode-state.ts).
import type { DeviceName } from '../core/backend.js';
import { isGradEnabled } from '../core/autograd.js';
import type { DType } from '../core/dtype.js';
import { untrackTensor } from '../core/scope.js';
import { OpError } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';
import { applyRotary, applyRotaryFrequencies, applyRotaryQK, applyRotaryQKFrequencies } from '../ops/rotary/index.js';
import { cat } from '../ops/movement.js';
import { CLEX, chunkedTrainingPositions, type TrainingPositions } from './clex/index.js';
import type { RopeScaling, RopeScalingType } from './config.js';

export interface RotaryOptions {
  /** Rotary dim d (even): head dim for LLaMA, rotary_ndims for GPT-NeoX. */
  dim: number;
  base: number;
  /** L0. */
  maxPositionEmbeddings: number;
  scaling: Required<RopeScaling> | null;
  /** The model's CLEX module when scaling.type is 'clex'. */
  clex?: CLEX | null;
}

/**
 * Which frequencies a RotaryEmbedding's table holds: two of its tables in the same state
 * (sameFrequencies) agree row by row at the same positions.
 */
export interface FrequencyState {
  /** 'none': the original frequencies (plain RoPE, dynamic NTK up to L0, CLEX at t = 1); else the rope_scaling type. */
  rule: 'none' | RopeScalingType;
  /** What the length changes: dynamic NTK's base, CLEX's t (0 for the static rules). */
  value: number;
  /** CLEX tables built from its inference cache: the cache's version (it changes with the ODE weights); else null. */
  version: number | null;
}

export function sameFrequencies(a: FrequencyState, b: FrequencyState): boolean {
  return a.rule === b.rule && a.value === b.value && a.version === b.version;
}

const ORIGINAL: FrequencyState = { rule: 'none', value: 0, version: null };

/**
 * The rotary rows of one forward for positions 0..L−1 (or the sampled positions in CLEX training), and
 * the frequencies that made them: cos/sin tables [L, R] (host-built rules), or CLEX's θ [R/2] with the
 * rows' positions [L] (the rotary kernels turn them into angles). rotateQK / rotateRows rotate by either.
 */
export type RotaryTables = TableRows | FrequencyRows;

interface RowsCommon {
  /** L: the number of rows (positions). */
  rows: number;
  frequencies: FrequencyState;
  /** Rows are the actual positions 0..L−1 (false for CLEX's sampled training positions). */
  contiguousPositions: boolean;
}

export interface TableRows extends RowsCommon {
  kind: 'tables';
  cos: Tensor;
  sin: Tensor;
}

export interface FrequencyRows extends RowsCommon {
  kind: 'frequencies';
  theta: Tensor;
  positions: Tensor;
}

/** q [.., Hq, L, D] and k [.., Hk, L, D] rotated by every row at once (one dispatch each way). */
export function rotateQK(q: Tensor, k: Tensor, rope: RotaryTables, rotaryDim?: number): { q: Tensor; k: Tensor } {
  return rope.kind === 'tables'
    ? applyRotaryQK(q, k, rope.cos, rope.sin, { rotaryDim })
    : applyRotaryQKFrequencies(q, k, rope.theta, rope.positions);
}

/** x [.., T, D] rotated by rows start..start+T−1 (a decoding step's new tokens). */
export function rotateRows(x: Tensor, rope: RotaryTables, start: number, rotaryDim?: number): Tensor {
  const T = x.shape[x.rank - 2];
  return rope.kind === 'tables'
    ? applyRotary(x, rope.cos.narrow(0, start, T), rope.sin.narrow(0, start, T), { rotaryDim })
    : applyRotaryFrequencies(x, rope.theta, rope.positions.narrow(0, start, T));
}

export interface TableRequest {
  /** Total length L_cur (cached + new tokens): rows 0..length−1 are returned. */
  length: number;
  device: DeviceName;
  dtype: DType;
  /** Training mode (CLEX samples t and positions). */
  training: boolean;
}

/** Host-built tables kept per RotaryEmbedding (least recently used are freed first). */
const MAX_CACHED_TABLES = 16;

interface CachedTable {
  cos: Tensor;
  sin: Tensor;
  rows: number;
  frequencies: FrequencyState;
}

export class RotaryEmbedding {
  readonly dim: number;
  readonly base: number;
  readonly L0: number;
  readonly scaling: Required<RopeScaling> | null;
  readonly clex: CLEX | null;
  private readonly tables = new Map<string, CachedTable>();
  /**
   * Where training forwards put their tokens: 'standard' (0..L−1; CLEX its paper's spread subset of
   * [0, t·L0)) or 'chunks' (two contiguous chunks with a random gap, spanning up to s·L0 for the static
   * scaled rules — linear, ntk, yarn, llama3 — and t·L0 for CLEX; plain RoPE and dynamic NTK keep 0..L−1).
   */
  trainingPositions: TrainingPositions = 'standard';

  constructor(opts: RotaryOptions) {
    if (!Number.isInteger(opts.dim) || opts.dim < 2 || opts.dim % 2 !== 0)
      throw new OpError('RotaryEmbedding', `rotary dim must be a positive even integer, got ${opts.dim}`);
    this.dim = opts.dim;
    this.base = opts.base;
    this.L0 = opts.maxPositionEmbeddings;
    this.scaling = opts.scaling;
    this.clex = opts.clex ?? null;
    if (this.scaling?.type === 'clex' && !this.clex)
      throw new OpError('RotaryEmbedding', "rope_scaling.type 'clex' needs the model's CLEX module");
  }

  get type(): 'none' | RopeScalingType {
    return this.scaling?.type ?? 'none';
  }

  /** Whether the frequencies depend on the current length (a 'rerotate' decoding state then keeps un-rotated keys). */
  get lengthDependent(): boolean {
    return this.type === 'dynamic' || this.type === 'clex';
  }

  /** The positions a static scaled rule covers, round(factor·L0); L0 for plain RoPE and the length-dependent rules. */
  private staticSpan(): number {
    return this.scaling && !this.lengthDependent ? Math.round(this.scaling.factor * this.L0) : this.L0;
  }

  /** θ_i = b^(−2i/d). */
  originalInverseFrequencies(base = this.base): Float64Array {
    const d = this.dim;
    return Float64Array.from({ length: d / 2 }, (_, i) => Math.pow(base, (-2 * i) / d));
  }

  /**
   * The inverse frequencies and cos/sin multiplier of a static or length-dependent rule at total
   * length L (not CLEX, whose frequencies come from the ODE).
   */
  inverseFrequencies(length: number): { invFreq: Float64Array; mscale: number; frequencies: FrequencyState } {
    const d = this.dim,
      b = this.base,
      s = this.scaling;
    const type = this.type;
    if (type === 'none' || !s) return { invFreq: this.originalInverseFrequencies(), mscale: 1, frequencies: ORIGINAL };
    const f = s.factor;
    const fixed: FrequencyState = { rule: type, value: 0, version: null };
    switch (type) {
      case 'linear':
        return { invFreq: this.originalInverseFrequencies().map((x) => x / f), mscale: 1, frequencies: fixed };
      case 'ntk': {
        const base = b * Math.pow(f, d / (d - 2));
        return { invFreq: this.originalInverseFrequencies(base), mscale: 1, frequencies: fixed };
      }
      case 'dynamic': {
        if (length <= this.L0) return { invFreq: this.originalInverseFrequencies(), mscale: 1, frequencies: ORIGINAL };
        const base = b * Math.pow((f * length) / this.L0 - (f - 1), d / (d - 2));
        return {
          invFreq: this.originalInverseFrequencies(base),
          mscale: 1,
          frequencies: { rule: type, value: base, version: null },
        };
      }
      case 'yarn': {
        const idx = (r: number) => (d * Math.log(this.L0 / (2 * Math.PI * r))) / (2 * Math.log(b));
        const low = Math.max(Math.floor(idx(s.beta_fast)), 0);
        let high = Math.min(Math.ceil(idx(s.beta_slow)), d - 1);
        if (high === low) high += 0.001; // as HF: avoid a zero-width ramp
        const theta = this.originalInverseFrequencies();
        const invFreq = theta.map((t, j) => {
          const ramp = Math.min(Math.max((j - low) / (high - low), 0), 1);
          return (t / f) * ramp + t * (1 - ramp);
        });
        return { invFreq, mscale: f > 1 ? 0.1 * Math.log(f) + 1 : 1, frequencies: fixed };
      }
      case 'llama3': {
        // Long wavelengths (past L_orig / low_freq_factor) are divided by the factor, short ones (below
        // L_orig / high_freq_factor) kept, and those between interpolated in L_orig / wavelength.
        const Lorig = s.original_max_position_embeddings,
          lo = s.low_freq_factor,
          hi = s.high_freq_factor;
        const invFreq = this.originalInverseFrequencies().map((t) => {
          const wavelength = (2 * Math.PI) / t;
          if (wavelength < Lorig / hi) return t;
          if (wavelength > Lorig / lo) return t / f;
          const smooth = (Lorig / wavelength - lo) / (hi - lo);
          return (1 - smooth) * (t / f) + smooth * t;
        });
        return { invFreq, mscale: 1, frequencies: fixed };
      }
      default:
        throw new OpError('RotaryEmbedding', `inverseFrequencies: '${type}' frequencies come from the CLEX ODE`);
    }
  }

  /** Rows 0..length−1 of the host-built table of these frequencies (cached, grown by doubling). */
  private hostRows(
    frequencies: FrequencyState,
    invFreq: Float64Array,
    mscale: number,
    length: number,
    device: DeviceName,
    dtype: DType,
  ): TableRows {
    const table = this.hostTable(frequencies, invFreq, mscale, length, device, dtype);
    return {
      kind: 'tables',
      rows: length,
      cos: table.cos.narrow(0, 0, length),
      sin: table.sin.narrow(0, 0, length),
      frequencies,
      contiguousPositions: true,
    };
  }

  /** A cached host-built table for these frequencies, with at least `rows` rows. */
  private hostTable(
    frequencies: FrequencyState,
    invFreq: Float64Array,
    mscale: number,
    rows: number,
    device: DeviceName,
    dtype: DType,
  ): CachedTable {
    const { rule, value, version } = frequencies;
    const key = `${rule}|${value}|${version}|${device}|${dtype}`;
    const have = this.tables.get(key);
    if (have && have.rows >= rows) {
      // Most recently used last (eviction takes the first).
      this.tables.delete(key);
      this.tables.set(key, have);
      return have;
    }
    const n = Math.max(rows, have ? have.rows * 2 : 0, 16);
    const half = this.dim / 2;
    const cosA = new Float64Array(n * this.dim),
      sinA = new Float64Array(n * this.dim);
    for (let p = 0; p < n; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * invFreq[i];
        const c = Math.cos(a) * mscale,
          sn = Math.sin(a) * mscale;
        cosA[p * this.dim + i] = cosA[p * this.dim + half + i] = c;
        sinA[p * this.dim + i] = sinA[p * this.dim + half + i] = sn;
      }
    }
    const table = {
      cos: tensor(cosA, { device, dtype, shape: [n, this.dim] }),
      sin: tensor(sinA, { device, dtype, shape: [n, this.dim] }),
      rows: n,
      frequencies,
    };
    untrackTensor(table.cos);
    untrackTensor(table.sin);
    if (have) {
      have.cos.dispose();
      have.sin.dispose();
    }
    // CLEX tables of an older cache version can never be asked for again.
    if (version !== null) this.dropTables((t) => t.frequencies.version !== null && t.frequencies.version !== version);
    this.tables.delete(key);
    this.tables.set(key, table);
    // Dynamic NTK makes a new table per length past L0: keep only the most recent ones (views handed
    // out earlier keep their storage alive on their own).
    while (this.tables.size > MAX_CACHED_TABLES) {
      const [oldest, t] = this.tables.entries().next().value as [string, CachedTable];
      t.cos.dispose();
      t.sin.dispose();
      this.tables.delete(oldest);
    }
    return table;
  }

  private dropTables(stale: (t: CachedTable) => boolean): void {
    for (const [k, t] of this.tables) {
      if (!stale(t)) continue;
      t.cos.dispose();
      t.sin.dispose();
      this.tables.delete(k);
    }
  }

  /** CLEX's rows at `positions` from θ(t) [d/2] (solved on the device, or with a graph to the ODE weights). */
  private frequencyRows(theta: Tensor, t: number, positions: readonly number[], contiguous: boolean): FrequencyRows {
    if (theta.size !== this.dim / 2)
      throw new OpError(
        'RotaryEmbedding',
        `CLEX gave ${theta.size} frequencies, the rotary dim ${this.dim} needs ${this.dim / 2}`,
      );
    return {
      kind: 'frequencies',
      rows: positions.length,
      theta: theta.reshape([this.dim / 2]),
      positions: tensor(Float64Array.from(positions), { device: theta.device, dtype: theta.dtype }),
      frequencies: { rule: 'clex', value: t, version: null },
      contiguousPositions: contiguous,
    };
  }

  /**
   * Tables for one forward. CLEX: in training, t and positions are sampled (rows are the sampled
   * positions); otherwise t = ceil(L/L0), from the inference cache when no gradient is recorded, or
   * solved with a graph to the ODE parameters when one is.
   */
  async forward(req: TableRequest): Promise<RotaryTables> {
    const { length, device, dtype, training } = req;
    if (!Number.isInteger(length) || length < 1)
      throw new OpError('RotaryEmbedding', `length must be a positive integer, got ${length}`);
    if (this.type !== 'clex') {
      const { invFreq, mscale, frequencies } = this.inverseFrequencies(length);
      const span = training && this.trainingPositions === 'chunks' ? this.staticSpan() : length;
      if (span <= length) return this.hostRows(frequencies, invFreq, mscale, length, device, dtype);
      // Two chunks of the span's table: rows 0..cut−1 and cut+gap..length−1+gap.
      const positions = chunkedTrainingPositions(length, span);
      const cut = positions.findIndex((p, i) => p !== i);
      const table = this.hostTable(frequencies, invFreq, mscale, span, device, dtype);
      const rows = (t: Tensor) =>
        cut < 0 ? t.narrow(0, 0, length) : cat([t.narrow(0, 0, cut), t.narrow(0, positions[cut], length - cut)]);
      return {
        kind: 'tables',
        rows: length,
        cos: rows(table.cos),
        sin: rows(table.sin),
        frequencies,
        contiguousPositions: false,
      };
    }
    const clex = this.clex as CLEX;
    const original = () => this.hostRows(ORIGINAL, this.originalInverseFrequencies(), 1, length, device, dtype);
    const recordGraph = isGradEnabled() && clex.parameters().some((p) => p.requiresGrad);
    if (training) {
      // Training draws t and positions whether or not a graph is recorded (so a no-grad training-mode
      // forward evaluates the same function the gradient is taken of).
      const { t, positions } = clex.sample(length, undefined, this.trainingPositions);
      if (t === 1) return original();
      return this.frequencyRows(await clex.frequencies(t), t, positions, false);
    }
    const t = clex.scaleFor(length);
    if (t === 1) return original();
    // A device solve costs a dispatch, not a readback: no cache needed.
    if (recordGraph || clex.solvesOnDevice) {
      const positions = Array.from({ length }, (_, i) => i);
      return this.frequencyRows(await clex.frequencies(t), t, positions, true);
    }
    const invFreq = await clex.cached(t);
    return this.hostRows({ rule: 'clex', value: t, version: clex.version }, invFreq, 1, length, device, dtype);
  }

  /** How many host-built tables are cached (bounded; for tests and stats). */
  get cachedTableCount(): number {
    return this.tables.size;
  }

  /** Frees the cached tables. */
  dispose(): void {
    for (const t of this.tables.values()) {
      t.cos.dispose();
      t.sin.dispose();
    }
    this.tables.clear();
  }
}
