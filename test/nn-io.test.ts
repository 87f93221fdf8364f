// safetensors: format details (checked by an independent parser / writer in this file), round trips,
// F16/BF16 decoding, and corrupted files that must fail with the file and the problem named, loading
// nothing. Checkpoints: round trip, roll-forward of an interrupted commit, mixed-save detection.
import { copyFile, mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { getRngState, io, manualSeed, memory, nn, optim, randn, tensor, type Tensor } from '../index.js';

const root = await mkdtemp(join(tmpdir(), 'dawngrad-io-'));
let counter = 0;
const tmpPath = (name: string) => join(root, `${counter++}-${name}`);
afterAll(async () => {
  const { rm } = await import('node:fs/promises');
  await rm(root, { recursive: true, force: true });
});

/** An independent safetensors writer (raw header object + raw data bytes) for hand-made files. */
function rawFile(header: Record<string, unknown>, data: Uint8Array, headerLenOverride?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLenOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

function parseRaw(buf: Buffer): {
  headerLen: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & {
    __metadata__?: Record<string, string>;
  };
  data: Buffer;
} {
  const headerLen = Number(buf.readBigUInt64LE(0));
  return {
    headerLen,
    header: JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')),
    data: buf.subarray(8 + headerLen),
  };
}

describe('safetensors files', () => {
  it('writes the standard layout: LE length, space-padded 8-aligned JSON header, contiguous LE data', async () => {
    const path = tmpPath('layout.safetensors');
    const a = tensor(
      [
        [1.5, -2],
        [3, 4],
      ],
      { device: 'webgpu' },
    );
    const b = tensor([7, -8, 9], { dtype: 'int32', device: 'webgpu' });
    const c = tensor([Math.PI], { dtype: 'float64', device: 'cpu' });
    await io.saveSafetensors(path, { a: a.transpose(0, 1), b, c }, { format: 'pt', note: 'hi' });
    const buf = await readFile(path);
    const { headerLen, header, data } = parseRaw(buf);
    expect(headerLen % 8).toBe(0);
    expect(buf.subarray(8, 8 + headerLen).toString('utf8')).toMatch(/} *$/);
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'hi' });
    expect(header.a).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
    expect(header.b).toEqual({ dtype: 'I32', shape: [3], data_offsets: [16, 28] });
    expect(header.c).toEqual({ dtype: 'F64', shape: [1], data_offsets: [28, 36] });
    expect(data.length).toBe(36);
    expect([0, 1, 2, 3].map((i) => data.readFloatLE(4 * i))).toEqual([1.5, 3, -2, 4]); // the transposed view, row-major
    expect([0, 1, 2].map((i) => data.readInt32LE(16 + 4 * i))).toEqual([7, -8, 9]);
    expect(data.readDoubleLE(28)).toBe(Math.PI);
  });

  it('round-trips float32 / int32 / float64 bit-exactly onto either device', async () => {
    const path = tmpPath('roundtrip.safetensors');
    manualSeed(3);
    const src = {
      w: randn([3, 5], { device: 'webgpu' }),
      ids: tensor([1, 2, 3], { dtype: 'int32', device: 'cpu' }),
      d: randn([4], { dtype: 'float64', device: 'cpu' }),
      empty: tensor(new Float32Array(0), { shape: [0, 2] }),
    };
    await io.saveSafetensors(path, src);
    for (const device of ['cpu', 'webgpu'] as const) {
      const { tensors, metadata } = await io.readSafetensors(path, { device });
      expect(metadata).toEqual({});
      expect(Object.keys(tensors)).toEqual(['w', 'ids', 'd', 'empty']);
      expect(tensors.w.device).toBe(device);
      expect(tensors.ids.dtype).toBe('int32');
      expect(tensors.d.dtype).toBe(device === 'cpu' ? 'float64' : 'float32');
      expect(tensors.empty.shape).toEqual([0, 2]);
      expect(Array.from(await tensors.w.data())).toEqual(Array.from(await src.w.data()));
      expect(Array.from(await tensors.ids.data())).toEqual([1, 2, 3]);
      const d = Array.from(await src.d.data());
      expect(Array.from(await tensors.d.data())).toEqual(device === 'cpu' ? d : d.map(Math.fround));
    }
  });

  it('decodes F16 and BF16 (to float32)', async () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x8000]);
    const bf16 = new Uint16Array([0x3f80, 0x4049, 0xc2f7]);
    const data = Buffer.concat([Buffer.from(f16.buffer), Buffer.from(bf16.buffer)]);
    const path = tmpPath('half.safetensors');
    await writeFile(
      path,
      rawFile(
        {
          h: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] },
          b: { dtype: 'BF16', shape: [3], data_offsets: [12, 18] },
        },
        data,
      ),
    );
    const t = await io.loadSafetensors(path, { device: 'cpu' });
    expect(t.h.dtype).toBe('float32');
    expect(t.h.shape).toEqual([2, 3]);
    const h = Array.from(await t.h.data());
    expect(h.slice(0, 2)).toEqual([1, -2]);
    expect(h[2]).toBeCloseTo(0.33325195, 7);
    expect(h[3]).toBeCloseTo(2 ** -24, 12);
    expect(h[4]).toBe(Infinity);
    expect(Object.is(h[5], -0)).toBe(true);
    expect(Array.from(await t.b.data())).toEqual([1, 3.140625, -123.5]);
  });

  describe('corrupted files fail with the file and the problem named, loading nothing', () => {
    const good = () =>
      rawFile(
        {
          __metadata__: { a: 'b' },
          x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
          y: { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
        },
        Buffer.alloc(24),
      );
    const cases: [string, () => Buffer, RegExp][] = [
      ['too short', () => Buffer.alloc(5), /too short for the 8-byte header length/],
      [
        'bad header length',
        () => {
          const b = good();
          b.writeBigUInt64LE(1n << 40n, 0);
          return b;
        },
        /bad header length 1099511627776/,
      ],
      [
        'header not JSON',
        () => rawFile({}, Buffer.alloc(0), undefined).fill(0x7b, 8),
        /header is not valid UTF-8 JSON/,
      ],
      [
        'truncated data',
        () => good().subarray(0, good().length - 4),
        /data_offsets \[16, 24\] out of range|size mismatch/,
      ],
      [
        'offsets out of range',
        () =>
          rawFile(
            {
              x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
              y: { dtype: 'F32', shape: [1], data_offsets: [100, 104] },
            },
            Buffer.alloc(12),
          ),
        /tensor 'y': data_offsets \[100, 104\] out of range/,
      ],
      [
        'unknown dtype',
        () => rawFile({ x: { dtype: 'Q7', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8)),
        /tensor 'x': unknown dtype "Q7"/,
      ],
      [
        'unsupported dtype',
        () => rawFile({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, Buffer.alloc(8)),
        /tensor 'x': dtype I64 is not supported/,
      ],
      [
        'size mismatch',
        () => rawFile({ x: { dtype: 'F32', shape: [3, 2], data_offsets: [0, 16] } }, Buffer.alloc(16)),
        /tensor 'x': size mismatch: F32 \[3,2\] needs 24 bytes but data_offsets span 16/,
      ],
      [
        'overlapping tensors',
        () =>
          rawFile(
            {
              x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
              y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
            },
            Buffer.alloc(12),
          ),
        /overlap/,
      ],
      [
        'trailing bytes',
        () => rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(12)),
        /cover 8 bytes but the data section has 12/,
      ],
      [
        'bad shape',
        () => rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, Buffer.alloc(0)),
        /shape \[-1\] is not a list of non-negative integers/,
      ],
    ];
    for (const [name, make, problem] of cases) {
      it(name, async () => {
        const path = tmpPath(`${name.replace(/ /g, '-')}.safetensors`);
        await writeFile(path, make());
        const live = memory().liveTensors;
        for (const device of ['cpu', 'webgpu'] as const) {
          const err = await io.loadSafetensors(path, { device }).then(
            () => null,
            (e: Error) => e,
          );
          expect(err).toBeInstanceOf(io.SafetensorsError);
          expect(err!.message).toContain(path);
          expect(err!.message).toMatch(problem);
        }
        expect(memory().liveTensors).toBe(live);
      });
    }
    it('a missing file', async () => {
      await expect(io.loadSafetensors(join(root, 'nope.safetensors'))).rejects.toThrow(
        /nope\.safetensors: cannot read the file/,
      );
    });
  });
});

class Net extends nn.Module {
  readonly a = this.module('a', new nn.Linear(3, 4, { device: 'cpu', dtype: 'float64' }));
  readonly b = this.module('b', new nn.Linear(4, 2, { device: 'cpu', dtype: 'float64' }));
  forward(x: Tensor): Tensor {
    return this.b.call(this.a.call(x).relu());
  }
}

async function trained(steps: number): Promise<{ net: Net; opt: optim.AdamW; sched: optim.LRScheduler }> {
  manualSeed(1);
  const net = new Net();
  const opt = new optim.AdamW(net.parameters(), { lr: 0.01 });
  const sched = optim.lr.linearWarmup(opt, { warmupSteps: 2 });
  for (let i = 0; i < steps; i++) {
    net
      .call(randn([5, 3], { device: 'cpu', dtype: 'float64' }))
      .square()
      .sum()
      .backward();
    opt.step();
    opt.zeroGrad();
    sched.step();
  }
  return { net, opt, sched };
}

const values = async (sd: Record<string, Tensor>) =>
  Object.fromEntries(await Promise.all(Object.entries(sd).map(async ([k, t]) => [k, Array.from(await t.data())])));

describe('checkpoints', () => {
  it('save → load restores model, optimizer, scheduler, RNG, step and config', async () => {
    const dir = tmpPath('ckpt');
    const { net, opt, sched } = await trained(3);
    const config = { model_type: 'mlp', hidden_size: 4, rope_scaling: null };
    await io.saveCheckpoint(dir, { model: net, optimizer: opt, scheduler: sched, step: 3, config });
    expect((await readdir(dir)).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'optimizer.safetensors',
      'trainer_state.json',
    ]);
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))).toEqual(config);
    const rng = getRngState();
    manualSeed(77);
    const fresh = await trained(0);
    const loaded = await io.loadCheckpoint(dir, { model: fresh.net, optimizer: fresh.opt, scheduler: fresh.sched });
    expect(loaded.step).toBe(3);
    expect(loaded.config).toEqual(config);
    expect(getRngState()).toBe(rng);
    expect(loaded.modelState).toBeUndefined();
    expect(await values(fresh.net.stateDict())).toEqual(await values(net.stateDict()));
    expect(fresh.sched.getLr()).toEqual(sched.getLr());
    const [s1, s2] = [opt.stateDict(), fresh.opt.stateDict()];
    expect(s2.paramGroups).toEqual(s1.paramGroups);
    for (const id of Object.keys(s1.state)) {
      expect(s2.state[id].step).toBe(s1.state[id].step);
      expect(await values(s2.state[id].buffers)).toEqual(await values(s1.state[id].buffers));
    }
    // Without targets the states are handed back.
    const raw = await io.loadCheckpoint(dir, { restoreRng: false });
    expect(Object.keys(raw.modelState!)).toEqual(Object.keys(net.stateDict()));
    expect(Object.keys(raw.optimizerState!.state)).toEqual(['0', '1', '2', '3']);
  });

  it('an interrupted commit (crash between renames) is rolled forward on load; stale temp files are ignored', async () => {
    const dir = tmpPath('crash');
    const later = tmpPath('later');
    const a = await trained(1);
    await io.saveCheckpoint(dir, { model: a.net, optimizer: a.opt, step: 1 });
    const b = await trained(4);
    await io.saveCheckpoint(later, { model: b.net, optimizer: b.opt, step: 4 });
    // Recreate the on-disk state of a save of `later` into `dir` that died after its first rename.
    const files = ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json'];
    const renames = files.map((f) => [`.${f}.tmp-1-abc`, f]);
    for (const [tmp, f] of renames) await copyFile(join(later, f), join(dir, tmp));
    await writeFile(join(dir, 'checkpoint-commit.json'), JSON.stringify({ save_id: 'x', renames }));
    await rename(join(dir, renames[0][0]), join(dir, 'model.safetensors'));
    await writeFile(join(dir, '.model.safetensors.tmp-2-dead'), 'partial garbage from a save killed while staging');
    const loaded = await io.loadCheckpoint(dir, { restoreRng: false, device: 'cpu' });
    expect(loaded.step).toBe(4);
    expect(await values(loaded.modelState!)).toEqual(await values(b.net.stateDict()));
    expect(await readdir(dir)).not.toContain('checkpoint-commit.json');
    await io.saveCheckpoint(dir, { model: a.net, step: 5 });
    expect((await readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a directory that mixes files from two saves', async () => {
    const dir = tmpPath('mixed');
    const other = tmpPath('other');
    const a = await trained(1);
    await io.saveCheckpoint(dir, { model: a.net, step: 1 });
    await io.saveCheckpoint(other, { model: a.net, step: 2 });
    await copyFile(join(other, 'model.safetensors'), join(dir, 'model.safetensors'));
    const live = memory().liveTensors;
    await expect(io.loadCheckpoint(dir)).rejects.toThrow(/model\.safetensors belongs to save .* mixes two saves/);
    expect(memory().liveTensors).toBe(live);
    await expect(io.loadCheckpoint(join(root, 'missing-dir'))).rejects.toThrow(/cannot read trainer_state\.json/);
  });
});
