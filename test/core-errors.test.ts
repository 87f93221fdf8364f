// Bad input raises an Error naming the op and the offending shapes/dtypes/devices.
import { describe, expect, it } from 'vitest';
import { ones, tensor, zeros } from '../index.js';

describe('clear errors on bad input', () => {
  it('broadcast mismatch names the op and both shapes', () => {
    expect(() => zeros([2, 3]).add(zeros([4, 3]))).toThrow(/^add: shapes \[2, 3\] and \[4, 3\] cannot be broadcast/);
  });
  it('matmul inner-dimension mismatch', () => {
    expect(() => zeros([2, 3]).matmul(zeros([4, 5]))).toThrow(/^matmul: inner dimensions differ: \[2, 3\] @ \[4, 5\]/);
  });
  it('float64 on webgpu', () => {
    expect(() => tensor([1, 2], { dtype: 'float64', device: 'webgpu' })).toThrow(
      /float64 is not supported on webgpu.*device 'cpu'/,
    );
    expect(() => zeros([2], { dtype: 'float64', device: 'webgpu' })).toThrow(/float64 is not supported on webgpu/);
  });
  it('mixed devices', () => {
    expect(() => ones([2], { device: 'cpu' }).mul(ones([2], { device: 'webgpu' }))).toThrow(
      /^mul: tensors are on different devices \(\[2\] on cpu, \[2\] on webgpu\)/,
    );
  });
  it('backward on a non-scalar without a gradient', () => {
    const x = ones([3], { requiresGrad: true });
    expect(() => x.exp().backward()).toThrow(
      /^backward: grad can be implicitly created only for scalar outputs, got shape \[3\]/,
    );
  });
  it('reshape, index range, axis and disposed tensors', () => {
    expect(() => zeros([2, 3]).reshape([4, 2])).toThrow(
      /^reshape: cannot reshape \[2, 3\] \(6 elements\) into \[4, 2\]/,
    );
    expect(() => zeros([3, 2]).indexSelect(0, tensor(new Int32Array([0, 3])))).toThrow(
      /^indexSelect: index out of range: values span \[0, 3\] but the indexed axis has size 3/,
    );
    expect(() =>
      zeros([3, 2], { device: 'cpu' }).indexSelect(0, tensor(new Int32Array([-1]), { device: 'cpu' })),
    ).toThrow(/indexSelect: index out of range/);
    expect(() => zeros([2]).sum(1)).toThrow(/^sum: axis 1 is out of range for a tensor of rank 1/);
    const t = zeros([2]);
    t.dispose();
    expect(() => t.add(1)).toThrow(/^add: tensor \[2\] \(float32, webgpu\) was already disposed/);
  });
});

describe('GPU errors surface as JS errors naming the op', () => {
  it('a kernel Dawn rejects raises at the op call with the op and the reason', async () => {
    const { getBackend } = await import('../core/device.js');
    const bad = { name: 'brokenOp', arity: 1, wgsl: ([a]: string[]) => `${a} +* 1.0`, js: (a: number) => a };
    const x = ones([4]);
    const out = zeros([4]);
    expect(() => getBackend('webgpu').elementwise(bad, [x], out, 'float32')).toThrow(
      /WebGPU error in op 'ew:brokenOp[^']*': .*WGSL/s,
    );
    // The runtime stays usable afterwards.
    expect(await x.add(1).toArray()).toEqual([2, 2, 2, 2]);
  });
});
