// Device selection through the environment, the no-adapter error, and scripts that exit on their own.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { config, withConfig } from '../core/config.js';
import { deviceInfo, getDefaultDevice, setDefaultDevice, zeros } from '../index.js';

/** Runs an ESM snippet against the built package in a fresh process (which must exit by itself). */
function runSnippet(code: string, env: Record<string, string> = {}): string {
  return execFileSync('node', ['--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, XDG_RUNTIME_DIR: '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

describe('devices', () => {
  beforeAll(() => {
    if (!existsSync('dist/index.js')) execFileSync('node', ['scripts/build.mjs'], { stdio: 'inherit' });
  });

  it('deviceInfo reports the adapter and the limits in use', () => {
    const info = deviceInfo();
    expect(info.backend).toBe('webgpu');
    if (info.backend === 'webgpu') {
      expect(info.adapter.length).toBeGreaterThan(0);
      expect(info.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
      // Enabled when the adapter has them (lavapipe has all three); the subgroup size comes with 'subgroups'.
      expect(info.features.every((f) => ['subgroups', 'timestamp-query', 'shader-f16'].includes(f))).toBe(true);
      expect(info.subgroupSize !== null).toBe(info.features.includes('subgroups'));
    }
  });

  it('the default device is config().device: configure, withConfig and setDefaultDevice change one setting', async () => {
    expect(getDefaultDevice()).toBe('webgpu');
    await withConfig({ device: 'cpu' }, () => {
      expect(getDefaultDevice()).toBe('cpu');
      expect(zeros([1]).device).toBe('cpu');
    });
    expect(zeros([1]).device).toBe('webgpu');
    setDefaultDevice('cpu');
    expect(config().device).toBe('cpu');
    setDefaultDevice('webgpu');
    expect(() => setDefaultDevice('tpu' as never)).toThrow(/setDefaultDevice: unknown device 'tpu'/);
  });

  it('DAWNGRAD_DEVICE=cpu makes cpu the default without touching Dawn', () => {
    const out = runSnippet(
      "import { tensor, deviceInfo } from 'dawngrad'; const t = tensor([1, 2]).mul(3); console.log(deviceInfo().backend, t.device, (await t.toArray()).join(','));",
      { DAWNGRAD_DEVICE: 'cpu' },
    );
    expect(out).toBe('cpu cpu 3,6');
  });

  it('no adapter gives an error that says how to fix it', () => {
    const out = runSnippet(
      "import { tensor } from 'dawngrad'; try { tensor([1]); } catch (e) { console.log(e.message); }",
      { DAWNGRAD_ADAPTER: 'no-such-adapter' },
    );
    expect(out).toMatch(/Dawn found no WebGPU adapter.*scripts\/setup\.sh.*DAWNGRAD_DEVICE=cpu/s);
  });

  it('a webgpu script exits by itself after reading results', () => {
    const out = runSnippet(
      "import { randn } from 'dawngrad'; const x = randn([64, 64]); console.log((await x.matmul(x).sum().item()) !== 0);",
    );
    expect(out).toBe('true');
  });

  it('a tensor larger than the adapter allows is refused at the op call', () => {
    const info = deviceInfo();
    if (info.backend !== 'webgpu') throw new Error('expected webgpu');
    const tooMany = Math.floor(info.limits.maxStorageBufferBindingSize / 4) + 1024;
    expect(() => zeros([tooMany])).toThrow(/exceeds this adapter's maxStorageBufferBindingSize/);
  });
});
