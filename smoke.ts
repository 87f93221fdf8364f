import { tensor, randn, manualSeed, memory, scope, zeros, cat, arange } from './index.ts';
for (const device of ['cpu', 'webgpu'] as const) {
  manualSeed(1);
  const x = tensor([[1, 2, 3], [4, 5, 6]], { device, requiresGrad: true });
  const w = randn([3, 2], { device, requiresGrad: true });
  const y = x.matmul(w).tanh().sum();
  y.backward();
  console.log(device, await y.item(), await x.grad!.toArray(), await w.grad!.toArray());
  const a = arange(6, undefined, 1, { device }).reshape([2, 3]);
  console.log(await a.transpose(0, 1).toArray(), await a.sum(1).toArray(), await a.astype('float32').max(0).toArray(), await a.argmax(1).toArray());
  console.log(await cat([x, x.mul(2)], 1).toArray(), await x.slice(1, 0, 3, 2).toArray());
  console.log(await randn([10000], { device }).var().item());
}
console.log(memory());
