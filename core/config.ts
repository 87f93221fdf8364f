// The one home of dawngrad's settings. Each is read once from its DAWNGRAD_* environment variable
// (validated: a bad value, or an unknown DAWNGRAD_ name, is an error naming it and the valid values),
// and can be changed in code with configure({...}). README lists them.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { OpError } from './shape.js';

export type DeviceSetting = 'webgpu' | 'cpu';
export type ProfileSetting = 'auto' | 'software' | 'hardware';

export interface Config {
  /** Default device of new tensors; 'cpu' also skips creating the Dawn device at import. */
  device: DeviceSetting;
  /** Dawn adapter toggle (`adapter=…`): a substring of the adapter's name, e.g. 'llvmpipe'. */
  adapter: string | null;
  /** Dawn backend toggle (`backend=…`), e.g. 'vulkan', 'metal', 'd3d12'. */
  backend: string | null;
  /**
   * Which adapter the kernel choices are tuned for: 'software' (CPU emulations such as lavapipe:
   * barrier-free variants, no fusion), 'hardware' (real GPUs), or 'auto' (from the adapter's name).
   */
  profile: ProfileSetting;
  /** Forced kernel variants by family, e.g. { row: 'group', matmul: 'shared' } (core/op.ts lists the families). */
  variants: Readonly<Record<string, string>>;
  /**
   * 'on': a kernel with several variants that fit times them on its first use per shape bucket and keeps
   * the fastest (cached per adapter in cacheDir); 'off' (default): the built-in heuristics. Off by
   * default because which variant runs then depends on timings, so the same seed can give results that
   * differ in the last bits between runs (as with PyTorch's cudnn.benchmark).
   */
  autotune: 'on' | 'off';
  /** Where the autotune cache lives: $XDG_CACHE_HOME/dawngrad, else ~/.cache/dawngrad. */
  cacheDir: string;
  /** Rows per chunk of the norms' parameter gradients (null: by profile). */
  normChunkRows: number | null;
  /** Elementwise fusion on webgpu (null: by profile; on for hardware). */
  fusion: boolean | null;
  /** Free GPU bytes the buffer pool keeps for reuse, in MiB. */
  poolLimitMB: number;
  /** Live GPU MiB past which the garbage collector is forced (0: never; null: from the adapter's limits). */
  gcThresholdMB: number | null;
  /** Hides the note printed when the garbage collector frees tensors that were never disposed. */
  silenceLeaks: boolean;
  /**
   * Optional WebGPU features dawngrad must not use even where the adapter has them ('shader-f16',
   * 'subgroups', 'timestamp-query'): to test or compare the paths an adapter without them takes.
   */
  disableFeatures: readonly string[];
}

/** The XDG cache directory for dawngrad (the platform convention on Linux; ~/.cache elsewhere too). */
function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'dawngrad');
}

export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  device: 'webgpu',
  adapter: null,
  backend: null,
  profile: 'auto',
  variants: Object.freeze({}),
  autotune: 'off',
  cacheDir: defaultCacheDir(process.env),
  normChunkRows: null,
  fusion: null,
  poolLimitMB: 1024,
  gcThresholdMB: null,
  silenceLeaks: false,
  disableFeatures: Object.freeze([]),
});

type Key = keyof Config;

/** How one setting is parsed from its variable and checked when set in code. */
interface Setting<K extends Key> {
  env: string;
  valid: string;
  parse: (raw: string) => Config[K] | undefined;
  check: (v: unknown) => v is Config[K];
}

const oneOf = <T extends string>(values: readonly T[]) => ({
  valid: values.map((v) => `'${v}'`).join(', '),
  parse: (raw: string) => ((values as readonly string[]).includes(raw) ? (raw as T) : undefined),
  check: (v: unknown): v is T => typeof v === 'string' && (values as readonly string[]).includes(v),
});
const nameOrNull = {
  valid: 'a non-empty string',
  parse: (raw: string) => (raw ? raw : undefined),
  check: (v: unknown): v is string | null => v === null || (typeof v === 'string' && v.length > 0),
};
const flag = {
  valid: "'1' or '0' (true or false in code)",
  parse: (raw: string) => (raw === '1' ? true : raw === '0' ? false : undefined),
  check: (v: unknown): v is boolean => typeof v === 'boolean',
};
const number = (min: number, integer: boolean, nullable: boolean) => {
  const ok = (n: unknown): n is number =>
    typeof n === 'number' && Number.isFinite(n) && n >= min && (!integer || Number.isInteger(n));
  return {
    valid: `${integer ? 'an integer' : 'a number'} ≥ ${min}${nullable ? ' (null in code: automatic)' : ''}`,
    parse: (raw: string) => (raw.trim() !== '' && ok(Number(raw)) ? Number(raw) : undefined),
    check: (v: unknown): v is number => ok(v) || (nullable && v === null),
  };
};
const variantMap = {
  valid: "comma-separated family=variant pairs, e.g. 'row=group,matmul=shared'",
  parse: (raw: string) => {
    const out: Record<string, string> = {};
    for (const pair of raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const m = /^([\w-]+)=([\w-]+)$/.exec(pair);
      if (!m) return undefined;
      out[m[1]] = m[2];
    }
    return out;
  },
  check: (v: unknown): v is Record<string, string> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === 'string'),
};

/** The optional WebGPU features dawngrad uses when the adapter has them. */
export const OPTIONAL_FEATURES = ['subgroups', 'timestamp-query', 'shader-f16'] as const;
const featureList = {
  valid: `a comma-separated list of ${OPTIONAL_FEATURES.map((f) => `'${f}'`).join(', ')} (empty: none)`,
  parse: (raw: string) => {
    const names = raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    return names.every((n) => (OPTIONAL_FEATURES as readonly string[]).includes(n)) ? names : undefined;
  },
  check: (v: unknown): v is readonly string[] =>
    Array.isArray(v) && v.every((n) => (OPTIONAL_FEATURES as readonly string[]).includes(n)),
};

const SETTINGS: { readonly [K in Key]: Setting<K> } = {
  device: { env: 'DAWNGRAD_DEVICE', ...oneOf(['webgpu', 'cpu'] as const) },
  adapter: { env: 'DAWNGRAD_ADAPTER', ...nameOrNull },
  backend: { env: 'DAWNGRAD_BACKEND', ...nameOrNull },
  profile: { env: 'DAWNGRAD_PROFILE', ...oneOf(['auto', 'software', 'hardware'] as const) },
  variants: { env: 'DAWNGRAD_VARIANTS', ...variantMap },
  autotune: { env: 'DAWNGRAD_AUTOTUNE', ...oneOf(['on', 'off'] as const) },
  cacheDir: {
    env: 'DAWNGRAD_CACHE_DIR',
    ...nameOrNull,
    check: (v: unknown): v is string => typeof v === 'string' && v.length > 0,
  },
  normChunkRows: { env: 'DAWNGRAD_NORM_CHUNK_ROWS', ...number(1, true, true) },
  fusion: {
    env: 'DAWNGRAD_FUSION',
    ...flag,
    check: (v: unknown): v is boolean | null => v === null || typeof v === 'boolean',
  },
  poolLimitMB: { env: 'DAWNGRAD_POOL_LIMIT_MB', ...number(0, false, false) },
  gcThresholdMB: { env: 'DAWNGRAD_GC_THRESHOLD_MB', ...number(0, false, true) },
  silenceLeaks: { env: 'DAWNGRAD_SILENCE_LEAKS', ...flag },
  disableFeatures: { env: 'DAWNGRAD_DISABLE_FEATURES', ...featureList },
};

/** Variables of earlier releases, with what replaced them. */
const REPLACED: Readonly<Record<string, string>> = {
  DAWNGRAD_ROW_KERNEL: 'DAWNGRAD_VARIANTS=row=thread|group',
  DAWNGRAD_MATMUL: 'DAWNGRAD_VARIANTS=matmul=vec4|register|shared',
  DAWNGRAD_ATTENTION: 'DAWNGRAD_VARIANTS=attention=row|tiled',
};

/** The settings from an environment (unset variables keep their defaults). Throws on a bad value or unknown name. */
export function configFromEnv(env: NodeJS.ProcessEnv): Config {
  const config: Config = { ...DEFAULT_CONFIG, cacheDir: defaultCacheDir(env) };
  const known = new Set(Object.values(SETTINGS).map((s) => s.env));
  for (const name of Object.keys(env)) {
    if (!name.startsWith('DAWNGRAD_') || known.has(name)) continue;
    const hint = REPLACED[name] ? `; it was replaced by ${REPLACED[name]}` : '';
    throw new Error(
      `dawngrad: unknown environment variable ${name}${hint}. The settings are ${[...known].join(', ')} (README, "Settings")`,
    );
  }
  for (const key of Object.keys(SETTINGS) as Key[]) {
    const s = SETTINGS[key] as Setting<Key>;
    const raw = env[s.env];
    if (raw === undefined) continue;
    const value = s.parse(raw);
    if (value === undefined) throw new Error(`dawngrad: ${s.env}='${raw}' is not valid; use ${s.valid}`);
    (config as unknown as Record<Key, unknown>)[key] = value;
  }
  return config;
}

let current: Readonly<Config> = Object.freeze(configFromEnv(process.env));
const listeners: ((c: Readonly<Config>) => void)[] = [];

/** The settings in force. */
export function config(): Readonly<Config> {
  return current;
}

/**
 * Changes settings in code (validated like the environment); returns the previous settings, so a caller
 * can put them back with configure(previous). `device` only changes the default device of new tensors.
 */
export function configure(changes: Partial<Config>): Readonly<Config> {
  if (typeof changes !== 'object' || changes === null)
    throw new OpError('configure', `expects an object of settings, got ${String(changes)}`);
  for (const [key, value] of Object.entries(changes)) {
    const s = (SETTINGS as Record<string, Setting<Key>>)[key];
    if (!s)
      throw new OpError('configure', `unknown setting '${key}'; the settings are ${Object.keys(SETTINGS).join(', ')}`);
    if (!s.check(value))
      throw new OpError('configure', `${key} = ${JSON.stringify(value)} is not valid; use ${s.valid}`);
  }
  const previous = current;
  current = Object.freeze({ ...current, ...changes });
  for (const listener of listeners) listener(current);
  return previous;
}

/** Runs fn with some settings changed, then restores them (tests, benchmarks). */
export async function withConfig<T>(changes: Partial<Config>, fn: () => T | Promise<T>): Promise<T> {
  const previous = configure(changes);
  try {
    return await fn();
  } finally {
    configure(previous);
  }
}

/** Called with the new settings after each configure() (modules that cache a derived value). */
export function onConfigure(listener: (c: Readonly<Config>) => void): void {
  listeners.push(listener);
}

/** Every setting with its variable and valid values (README's table is checked against this). */
export function describeSettings(): { key: Key; env: string; valid: string; default: unknown }[] {
  return (Object.keys(SETTINGS) as Key[]).map((key) => ({
    key,
    env: SETTINGS[key].env,
    valid: SETTINGS[key].valid,
    default: DEFAULT_CONFIG[key],
  }));
}
