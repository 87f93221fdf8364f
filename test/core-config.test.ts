// core/config.ts: settings read once from DAWNGRAD_* (validated), changed with configure(), and the
// variant forcing that core/op.ts applies. README's Settings table lists every setting.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { config, configFromEnv, configure, DEFAULT_CONFIG, describeSettings, withConfig } from '../core/config.js';
import { getDefaultDevice, gpuRuntime } from '../core/device.js';
import { chooseVariant, registeredKernels } from '../core/op.js';
import { functional as F, randn } from '../index.js';

describe('configuration', () => {
  it('reads each setting from its variable, and keeps the defaults for unset ones', () => {
    expect(configFromEnv({ HOME: '/home/u' })).toEqual({ ...DEFAULT_CONFIG, cacheDir: '/home/u/.cache/dawngrad' });
    expect(configFromEnv({ XDG_CACHE_HOME: '/c' }).cacheDir).toBe('/c/dawngrad');
    const c = configFromEnv({
      DAWNGRAD_DEVICE: 'cpu',
      DAWNGRAD_VARIANTS: 'row=group, matmul=shared',
      DAWNGRAD_FUSION: '0',
      DAWNGRAD_POOL_LIMIT_MB: '64',
      DAWNGRAD_NORM_CHUNK_ROWS: '3',
      DAWNGRAD_SILENCE_LEAKS: '1',
      PATH: '/bin',
    });
    expect(c).toMatchObject({
      device: 'cpu',
      variants: { row: 'group', matmul: 'shared' },
      fusion: false,
      poolLimitMB: 64,
      normChunkRows: 3,
      silenceLeaks: true,
    });
  });

  it('refuses a bad value, naming the variable and the valid values', () => {
    expect(() => configFromEnv({ DAWNGRAD_POOL_LIMIT_MB: 'lots' })).toThrow(
      /DAWNGRAD_POOL_LIMIT_MB='lots' is not valid; use a number ≥ 0/,
    );
    expect(() => configFromEnv({ DAWNGRAD_NORM_CHUNK_ROWS: '2.5' })).toThrow(
      /DAWNGRAD_NORM_CHUNK_ROWS='2.5'.*an integer ≥ 1/,
    );
    expect(() => configFromEnv({ DAWNGRAD_FUSION: 'yes' })).toThrow(/DAWNGRAD_FUSION='yes'.*'1' or '0'/);
    expect(() => configFromEnv({ DAWNGRAD_DEVICE: 'gpu' })).toThrow(/DAWNGRAD_DEVICE='gpu'.*'webgpu', 'cpu'/);
    expect(() => configFromEnv({ DAWNGRAD_VARIANTS: 'row' })).toThrow(/DAWNGRAD_VARIANTS='row'.*family=variant/);
    expect(() => configFromEnv({ DAWNGRAD_GC_THRESHOLD_MB: '' })).toThrow(/DAWNGRAD_GC_THRESHOLD_MB=''/);
  });

  it('refuses an unknown DAWNGRAD_ variable, listing the settings (and what replaced an old one)', () => {
    expect(() => configFromEnv({ DAWNGRAD_DEVCE: 'cpu' })).toThrow(
      /unknown environment variable DAWNGRAD_DEVCE\. The settings are DAWNGRAD_DEVICE, /,
    );
    expect(() => configFromEnv({ DAWNGRAD_ROW_KERNEL: 'group' })).toThrow(
      /replaced by DAWNGRAD_VARIANTS=row=thread\|group/,
    );
  });

  it('a typo in the environment stops the import with that error', () => {
    let message = '';
    try {
      execFileSync('node', ['--input-type=module', '-e', "await import('dawngrad');"], {
        encoding: 'utf8',
        env: { ...process.env, DAWNGRAD_FUSON: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      message = String((e as { stderr?: string }).stderr);
    }
    expect(message).toMatch(/unknown environment variable DAWNGRAD_FUSON/);
  });

  it('configure validates, returns the previous settings, and withConfig restores them', async () => {
    expect(() => configure({ fusion: 'yes' as unknown as boolean })).toThrow(/configure: fusion = "yes" is not valid/);
    expect(() => configure({ poolLimt: 1 } as unknown as Partial<typeof DEFAULT_CONFIG>)).toThrow(
      /unknown setting 'poolLimt'; the settings are device, /,
    );
    const before = config();
    await withConfig({ poolLimitMB: 8, device: 'cpu' }, () => {
      expect(config().poolLimitMB).toBe(8);
      expect(getDefaultDevice()).toBe('cpu');
      expect(gpuRuntime()?.poolLimit ?? 8 * 2 ** 20).toBe(8 * 2 ** 20);
    });
    expect(config()).toEqual(before);
  });

  it('a forced variant must name a family and a variant that exist', async () => {
    const x = randn([2, 8]);
    await withConfig({ variants: { rows: 'group' } }, () => {
      expect(() => F.softmax(x)).toThrow(/unknown kernel family 'rows'.*the families are .*row/);
    });
    await withConfig({ variants: { row: 'warp' } }, () => {
      expect(() => F.softmax(x)).toThrow(/family 'row' has no variant 'warp'; its variants are thread, group/);
    });
    const softmaxRows = registeredKernels().get('softmaxRows')!;
    await withConfig({ variants: { row: 'group' } }, () => {
      expect(chooseVariant(softmaxRows, { nRows: 1, C: 8 } as never).name).toBe('group');
    });
    x.dispose();
  });

  it('the profile setting decides what the automatic choice tunes for', async () => {
    const softmaxRows = registeredKernels().get('softmaxRows')!;
    const args = { nRows: 64, C: 512 } as never;
    await withConfig({ profile: 'software' }, () => expect(chooseVariant(softmaxRows, args).name).toBe('thread'));
    await withConfig({ profile: 'hardware' }, () => expect(chooseVariant(softmaxRows, args).name).toBe('group'));
  });

  it("README's Settings table lists every setting with its variable", () => {
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(
      readme.indexOf('## Settings'),
      readme.indexOf('\n## ', readme.indexOf('## Settings') + 5),
    );
    for (const s of describeSettings()) expect(section).toContain(`| \`${s.key}\` | \`${s.env}\``);
    const documented = [...readme.matchAll(/\bDAWNGRAD_[A-Z_]+\b/g)].map((m) => m[0]);
    expect(documented.filter((v) => !describeSettings().some((s) => s.env === v))).toEqual([]);
  });
});
