// Command-line plumbing shared by the scripts: flag parsing on node:util parseArgs (with --help and an
// unknown-flag error that lists the valid flags), checked number/choice/list conversions, and a runner
// that prints a user error as one clear line (exit code 2) instead of a stack trace.
import { parseArgs } from 'node:util';
import { io, OpError } from '../../index.js';

/** A problem with what the user asked for (flags, files, checkpoints): printed without a stack. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  type: 'string' | 'boolean';
  /** Shown in --help; strings are parsed by the script. */
  default?: string | boolean;
  /** Placeholder shown in --help, e.g. 'N' or 'PATH'. */
  arg?: string;
  help: string;
}
export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValues<S extends FlagSpecs> = {
  [K in keyof S]: S[K]['type'] extends 'boolean' ? boolean : string | undefined;
};

function helpText(script: string, usage: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const left = `  --${name}${s.type === 'string' ? ` ${s.arg ?? 'VALUE'}` : ''}`;
    const def = s.default !== undefined && s.default !== false ? ` (default ${String(s.default)})` : '';
    return `${left.length < 30 ? left.padEnd(30) : `${left}\n${' '.repeat(30)}`} ${s.help}${def}`;
  });
  return `usage: ${usage}\n\n${rows.join('\n')}\n${'  --help'.padEnd(30)} show this help`;
}

/**
 * Parses argv against `specs`. `--help` prints the usage and exits 0; an unknown flag, a missing value
 * or a stray positional raises a UsageError naming it and listing the valid flags.
 */
export function parseFlags<S extends FlagSpecs>(
  script: string,
  usage: string,
  specs: S,
  argv: string[],
  opts: { positionals?: boolean } = {},
): { values: FlagValues<S>; positionals: string[] } {
  const options = Object.fromEntries([
    ...Object.entries(specs).map(([name, s]) => [
      name,
      { type: s.type, ...(s.default !== undefined ? { default: s.default } : {}) },
    ]),
    ['help', { type: 'boolean' }],
  ]) as NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(helpText(script, usage, specs));
    process.exit(0);
  }
  const valid = Object.keys(specs)
    .map((n) => `--${n}`)
    .join(' ');
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: opts.positionals ?? false });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const message = (e as Error).message
      .replace(/\. To specify a positional argument.*$/s, '')
      .replace(/^Unknown option/, 'unknown flag');
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const typed = /'--([^'=]+)/.exec(message)?.[1];
      const near = typed === undefined ? undefined : nearestFlag(typed, Object.keys(specs));
      throw new UsageError(
        `${script}: ${message}${near ? ` (did you mean --${near}?)` : ''}. Valid flags: ${valid} --help`,
      );
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw new UsageError(
        `${script}: unexpected argument(s) ${argv.filter((a) => !a.startsWith('-')).join(' ')}: every option is a --flag (see --help)`,
      );
    throw new UsageError(`${script}: ${message} (see --help)`);
  }
  return { values: parsed.values as FlagValues<S>, positionals: parsed.positionals };
}

/** The flag a typo most likely meant: the nearest by edit distance, if within 2 edits. */
function nearestFlag(typed: string, names: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++)
        next.push(Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
      row = next;
    }
    return row[b.length];
  };
  const [best] = names.map((name) => ({ name, d: distance(typed, name) })).sort((x, y) => x.d - y.d);
  return best && best.d <= 2 ? best.name : undefined;
}

/** A number flag, checked: integer-ness and bounds are stated in the error. */
export function numberFlag(
  name: string,
  value: string | undefined,
  opts: { integer?: boolean; min?: number; max?: number; above?: number },
): number {
  const n = value === undefined || value.trim() === '' ? NaN : Number(value);
  const kind = opts.integer ? 'an integer' : 'a number';
  const bounds = [
    opts.min !== undefined ? `≥ ${opts.min}` : '',
    opts.above !== undefined ? `> ${opts.above}` : '',
    opts.max !== undefined ? `≤ ${opts.max}` : '',
  ]
    .filter(Boolean)
    .join(' and ');
  const ok =
    Number.isFinite(n) &&
    (!opts.integer || Number.isInteger(n)) &&
    (opts.min === undefined || n >= opts.min) &&
    (opts.above === undefined || n > opts.above) &&
    (opts.max === undefined || n <= opts.max);
  if (!ok) throw new UsageError(`--${name} must be ${kind}${bounds ? ` ${bounds}` : ''}, got '${value ?? ''}'`);
  return n;
}

export function choiceFlag<T extends string>(name: string, value: string | undefined, choices: readonly T[]): T {
  if (!choices.includes(value as T))
    throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got '${value ?? ''}'`);
  return value as T;
}

/** A comma-separated list flag ('64,128,256'), each item converted by `item`. */
export function listFlag<T>(name: string, value: string, item: (s: string) => T): T[] {
  const parts = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new UsageError(`--${name} needs a comma-separated list, got '${value}'`);
  return parts.map(item);
}

/**
 * Runs a script's main function: user errors (bad flags, files, configs, checkpoints) print one line
 * and exit with code 2; anything else is a bug and keeps its stack.
 */
export function runScript(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      if (e instanceof UsageError || e instanceof OpError || e instanceof io.CheckpointError) {
        console.error(`error: ${e.message}`);
        process.exit(2);
      }
      console.error(e);
      process.exit(1);
    },
  );
}
