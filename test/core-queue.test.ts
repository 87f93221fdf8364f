// The GPU queue stays bounded when work is queued for a long time without a read (issue: the process
// died with SIGSEGV after ~60,000 dispatches): bind groups are reused, async boundaries settle the
// backlog, and a lost device raises an error naming the adapter and the op.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpuBackend, gpuRuntime } from '../core/device.js';
import { createRuntime } from '../core/webgpu/runtime.js';
import { config } from '../core/config.js';
import { memory, scope, tensor, type Tensor } from '../index.js';

const rt = gpuRuntime();
const DISPATCHES = 150_000;
const rssMB = () => process.memoryUsage().rss / 2 ** 20;

/** y ← y/2 + 1 (two dispatches), replacing y: converges to 2 from any start. */
const halfPlusOne = (y: Tensor): Tensor => y.mul(0.5).add(1);

describe.runIf(rt)('a long queue without reads', () => {
  // These loops count dispatches: with fusion a whole run of y/2 + 1 steps is one dispatch, and reaching
  // the count would take ~20× the iterations. The queue is what is tested here, so every op dispatches.
  let fusion = true;
  beforeAll(() => {
    fusion = gpuBackend()!.fuser.enabled;
    gpuBackend()!.fuser.enabled = false;
  });
  afterAll(() => {
    gpuBackend()!.fuser.enabled = fusion;
  });
  it(`survives ${DISPATCHES} dispatches in a synchronous loop, with bounded memory per dispatch`, async () => {
    let y = tensor(
      Array.from({ length: 4096 }, (_, i) => i),
      { shape: [64, 64] },
    );
    const d0 = memory().dispatches;
    const rss0 = rssMB();
    while (memory().dispatches - d0 < DISPATCHES) {
      const next = scope(() => halfPlusOne(y));
      y.dispose();
      y = next;
    }
    const growth = rssMB() - rss0;
    const values = (await y.toArray()) as number[][];
    expect(values.flat().every((v) => Math.abs(v - 2) < 1e-6)).toBe(true);
    // Measured: ~0.6 KB per dispatch (Dawn's recorded commands, freed once the loop turns) where a
    // fresh bind group per dispatch cost ~6 KB and crashed at ~60,000.
    expect(growth).toBeLessThan((DISPATCHES * 1.5) / 1024);
    y.dispose();
  });

  it(`keeps at most 3 submits unfinished at async boundaries over ${DISPATCHES} dispatches whose awaits never touch I/O`, async () => {
    let y = tensor(
      Array.from({ length: 4096 }, (_, i) => -i),
      { shape: [64, 64] },
    );
    const d0 = memory().dispatches;
    let maxUnfinished = 0;
    let rssMid = 0;
    while (memory().dispatches - d0 < DISPATCHES) {
      const next = await scope(async () => {
        await Promise.resolve();
        return halfPlusOne(y);
      });
      y.dispose();
      y = next;
      maxUnfinished = Math.max(maxUnfinished, rt!.unfinishedSubmits);
      if (!rssMid && memory().dispatches - d0 >= DISPATCHES / 3) rssMid = rssMB();
    }
    const growth = rssMB() - rssMid;
    const values = (await y.toArray()) as number[][];
    expect(values.flat().every((v) => Math.abs(v - 2) < 1e-6)).toBe(true);
    expect(maxUnfinished).toBeLessThanOrEqual(3);
    // Flat once warm (measured within ±30 MB over the last 100,000 dispatches).
    expect(growth).toBeLessThan(60);
    y.dispose();
  });

  it('a lost device raises an error naming the adapter and the op, for ops and reads alike', async () => {
    const own = await createRuntime(config());
    const buffer = own.acquire(16);
    const pipeline = own.pipeline(
      'probe',
      () => `@group(0) @binding(0) var<uniform> P: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = f32(P.x); }`,
    );
    own.device.destroy();
    await new Promise((r) => setTimeout(r, 20)); // the loss is reported when the event loop turns
    const lost = `the device on adapter '${own.info.adapter}' was lost`;
    expect(() => own.dispatch('probeOp', pipeline, new Uint32Array(64), [buffer], [1, 1, 1])).toThrow(
      `${lost} (destroyed: device was destroyed); op 'probeOp' cannot run`,
    );
    await expect(own.read(buffer, 0, 4)).rejects.toThrow(
      `${lost} (destroyed: device was destroyed); op 'read' cannot run`,
    );
  });
});
