// The CLEX right-hand side f(z) = act((z + c)·W_up)·W_down + ξ as one recorded op on the cpu backend.
// The state is tiny (a row of d/2 values, W_up [d/2, λd]), so composed ops would spend their time in
// per-op overhead; this does the forward and its vector–Jacobian product in plain loops (float64).
// The backward rule is first-order only (enough for backprop through the solver and for the adjoint).
import { record } from '../core/autograd.js';
import type { CpuBackend } from '../core/cpu.js';
import { getBackend } from '../core/device.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';

const read = (t: Tensor): ArrayLike<number> => (getBackend('cpu') as CpuBackend).readSync(t);

/**
 * f for a cpu row z [1, n] with up [n, m], down [m, n] and constant rows shift, drift (length n).
 * Differentiable in z, up and down.
 */
export function clexDynamicsCpu(z: Tensor, up: Tensor, down: Tensor, shift: Float64Array, drift: Float64Array, act: 'tanh' | 'silu'): Tensor {
  const n = shift.length;
  const m = up.shape[1];
  if (z.device !== 'cpu' || up.device !== 'cpu' || down.device !== 'cpu') throw new OpError('clexDynamicsCpu', 'all tensors must be on cpu');
  if (z.size !== n || up.shape[0] !== n || down.shape[0] !== m || down.shape[1] !== n) {
    throw new OpError('clexDynamicsCpu', `shapes do not fit: z ${shapeStr(z.shape)}, up ${shapeStr(up.shape)}, down ${shapeStr(down.shape)}, ${n} frequencies`);
  }
  const zv = read(z), U = read(up), W = read(down);
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = zv[i] + shift[i];
  const h = new Float64Array(m), a = new Float64Array(m), dact = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * U[i * m + j];
    h[j] = s;
    if (act === 'tanh') {
      a[j] = Math.tanh(s);
      dact[j] = 1 - a[j] * a[j];
    } else {
      const sg = 1 / (1 + Math.exp(-s));
      a[j] = s * sg;
      dact[j] = sg * (1 + s * (1 - sg));
    }
  }
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let s = drift[k];
    for (let j = 0; j < m; j++) s += a[j] * W[j * n + k];
    out[k] = s;
  }
  const dtype = z.dtype;
  const y = tensor(out, { device: 'cpu', dtype, shape: z.shape });
  return record('clexDynamics', y, [z, up, down], (g) => {
    const gv = read(g);
    // dW_down = aᵀ g; dh = (g W_downᵀ) ⊙ act'(h); dz = dh W_upᵀ; dW_up = xᵀ dh.
    const dDown = new Float64Array(m * n), dh = new Float64Array(m), dUp = new Float64Array(n * m), dz = new Float64Array(n);
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) {
        dDown[j * n + k] = a[j] * gv[k];
        s += gv[k] * W[j * n + k];
      }
      dh[j] = s * dact[j];
    }
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < m; j++) {
        dUp[i * m + j] = x[i] * dh[j];
        s += dh[j] * U[i * m + j];
      }
      dz[i] = s;
    }
    return [
      tensor(dz, { device: 'cpu', dtype, shape: z.shape }),
      tensor(dUp, { device: 'cpu', dtype: up.dtype, shape: up.shape }),
      tensor(dDown, { device: 'cpu', dtype: down.dtype, shape: down.shape }),
    ];
  });
}
