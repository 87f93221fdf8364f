// Autotuning: a kernel whose arguments several webgpu variants fit times each of them on its first use
// per shape bucket (GPU timestamps, no blocking: the heuristic's choice serves until the times are in)
// and keeps the fastest, per adapter, in a versioned JSON cache under config().cacheDir. A corrupt or
// old cache is rebuilt with a one-line warning; autotune: 'off' keeps the heuristics.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { config } from './config.js';
import type { GpuRuntime } from './webgpu/runtime.js';

/** Bumped when the cache's meaning changes (bucketing, timing): older files are rebuilt. */
export const AUTOTUNE_CACHE_VERSION = 1;
/** Timed passes per candidate (after one untimed warm-up run); the median counts. */
const TIMED_PASSES = 3;
/** Runs of the candidate inside one timed pass: coarse GPU clocks (lavapipe ticks every ~3 ms) need several. */
const RUNS_PER_PASS = 2;
/** Another variant replaces the heuristic's choice only when it is faster by more than this fraction. */
const MARGIN = 0.1;
/** Buckets tuned per kernel in one process at most: bounds the tuning time of a run with many shapes. */
const MAX_BUCKETS_PER_KERNEL = 24;

export interface TunedChoice {
  /** The fastest variant. */
  readonly variant: string;
  /** Median GPU ms of each candidate. */
  readonly ms: Readonly<Record<string, number>>;
}

interface CacheFile {
  version: number;
  /** Per adapter (vendor, architecture, name and driver), per 'kernel|bucket'. */
  adapters: Record<string, Record<string, TunedChoice>>;
}

/** A shape bucket of a kernel's arguments: tensor shapes and integer sizes rounded up to powers of two, flags as they are. */
export function shapeBucket(args: object): string {
  // Built with plain loops: it runs on every dispatch of a kernel that several variants fit.
  let out = '';
  for (const k in args) {
    const part = bucketPart((args as Record<string, unknown>)[k]);
    if (part !== null) out += `${out ? ' ' : ''}${k}=${part}`;
  }
  return out;
}

const roundUp = (n: number) =>
  n <= 2 ? n : n < 2 ** 31 ? 2 ** (32 - Math.clz32(n - 1)) : 2 ** Math.ceil(Math.log2(n));

function bucketPart(v: unknown): string | null {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number') return Number.isInteger(v) ? String(roundUp(v)) : null;
  if (typeof v === 'string' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.every((x) => typeof x === 'number') ? `#${roundUp(v.length)}` : null;
  if (typeof v === 'object' && 'shape' in v && 'storage' in v) {
    const { shape, dtype } = v as { shape: readonly number[]; dtype?: string };
    let dims = '';
    for (let i = 0; i < shape.length; i++) dims += `${i ? ',' : ''}${roundUp(shape[i])}`;
    return `${dtype ?? ''}[${dims}]`;
  }
  return null;
}

let cacheDir = '';
let cachePath = '';
let file: CacheFile | null = null;
const adapterKeys = new WeakMap<GpuRuntime, string>();
let announced = false;
let writeScheduled = false;
const tunedPerKernel = new Map<string, number>();
const inFlight = new Set<string>();

function adapterKey(rt: GpuRuntime): string {
  let key = adapterKeys.get(rt);
  if (key === undefined) {
    const i = rt.info;
    key = `${i.vendor}|${i.architecture}|${i.adapter}`;
    adapterKeys.set(rt, key);
  }
  return key;
}

/** The cache for config().cacheDir, read once (a corrupt or older file starts empty, with a warning). */
function cache(): CacheFile {
  if (file && cacheDir === config().cacheDir) return file;
  cacheDir = config().cacheDir;
  const path = join(cacheDir, `autotune-v${AUTOTUNE_CACHE_VERSION}.json`);
  cachePath = path;
  file = { version: AUTOTUNE_CACHE_VERSION, adapters: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return file; // no cache yet
  }
  try {
    const parsed = JSON.parse(text) as CacheFile;
    if (parsed.version !== AUTOTUNE_CACHE_VERSION || typeof parsed.adapters !== 'object' || parsed.adapters === null) {
      throw new Error(`version ${String(parsed.version)}, expected ${AUTOTUNE_CACHE_VERSION}`);
    }
    file = parsed;
  } catch (e) {
    console.warn(`dawngrad: the autotune cache ${path} is unreadable (${(e as Error).message}); rebuilding it`);
  }
  return file;
}

function save(): void {
  if (writeScheduled) return;
  writeScheduled = true;
  setImmediate(() => {
    writeScheduled = false;
    const f = file;
    if (!f) return;
    try {
      mkdirSync(config().cacheDir, { recursive: true });
      const tmp = `${cachePath}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(f, null, 1)}\n`);
      renameSync(tmp, cachePath);
    } catch (e) {
      console.warn(
        `dawngrad: could not write the autotune cache ${cachePath} (${(e as Error).message}); tuning stays in memory`,
      );
    }
  });
}

/** The cached choice for a kernel's bucket on this adapter, when its candidates are still these. */
export function tunedChoice(
  rt: GpuRuntime,
  kernel: string,
  bucket: string,
  candidates: readonly string[],
): TunedChoice | null {
  const entry = cache().adapters[adapterKey(rt)]?.[`${kernel}|${bucket}`];
  if (!entry || !candidates.includes(entry.variant)) return null;
  const timed = Object.keys(entry.ms);
  return timed.length === candidates.length && candidates.every((c) => timed.includes(c)) ? entry : null;
}

/** Every cached choice for this adapter, by 'kernel|bucket' (gpu-report, tests). */
export function tunedChoices(rt: GpuRuntime): Readonly<Record<string, TunedChoice>> {
  return cache().adapters[adapterKey(rt)] ?? {};
}

/** Whether tuning may start for this kernel's bucket now (not already running, within the per-kernel bound). */
export function mayTune(kernel: string, bucket: string): boolean {
  return !inFlight.has(`${kernel}|${bucket}`) && (tunedPerKernel.get(kernel) ?? 0) < MAX_BUCKETS_PER_KERNEL;
}

/**
 * Times each candidate on the real arguments (its outputs are rewritten by every run: kernels with several
 * variants write their outputs whole), then records the fastest; the heuristic's choice keeps its place
 * unless another is faster by more than MARGIN (timer ticks are coarse on some adapters). Candidates run
 * as `run(name)`.
 */
export function tune(
  rt: GpuRuntime,
  kernel: string,
  bucket: string,
  candidates: readonly string[],
  heuristic: string,
  run: (variant: string) => void,
): void {
  const key = `${kernel}|${bucket}`;
  inFlight.add(key);
  tunedPerKernel.set(kernel, (tunedPerKernel.get(kernel) ?? 0) + 1);
  if (!announced) {
    announced = true;
    console.log(
      `dawngrad: autotuning kernel variants on ${rt.info.adapter} (once per shape; cached in ${config().cacheDir}; autotune: 'off' uses the heuristics)`,
    );
  }
  const timings = candidates.map((name) => {
    run(name); // warm-up: compiles the pipeline, computes pending inputs
    return Array.from({ length: TIMED_PASSES }, () =>
      rt.timePass(() => {
        for (let r = 0; r < RUNS_PER_PASS; r++) run(name);
      }),
    );
  });
  if (timings.some((runs) => runs.some((t) => t === null))) {
    inFlight.delete(key);
    return;
  }
  Promise.all(timings.map((runs) => Promise.all(runs as Promise<number>[]))).then(
    (ms) => {
      inFlight.delete(key);
      if (ms.flat().some(Number.isNaN)) return; // a candidate's work left the timed pass: keep the heuristics
      const median = ms.map((runs) => [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)] / RUNS_PER_PASS);
      const fastest = median.indexOf(Math.min(...median));
      const kept = candidates.indexOf(heuristic);
      const best = kept >= 0 && median[fastest] >= median[kept] * (1 - MARGIN) ? kept : fastest;
      const f = cache();
      const adapter = (f.adapters[adapterKey(rt)] ??= {});
      adapter[key] = { variant: candidates[best], ms: Object.fromEntries(candidates.map((c, i) => [c, median[i]])) };
      save();
    },
    () => inFlight.delete(key), // a lost device: the heuristics keep serving
  );
}

/** Forgets the in-memory cache (tests switch cacheDir). */
export function resetAutotune(): void {
  file = null;
  cacheDir = '';
  cachePath = '';
  announced = false;
  tunedPerKernel.clear();
  inFlight.clear();
}
