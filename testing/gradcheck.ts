// Gradient checks, a public feature: analytic gradients on the float64 cpu backend against central
// finite differences, and webgpu float32 against the cpu float64 reference.
import { grad, noGrad } from '../core/autograd.js';
import { WIDEST_FLOAT, type DeviceName } from '../core/backend.js';
import { cpu } from '../core/device.js';
import { scope } from '../core/scope.js';
import { shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Which inputs to differentiate (default: every float input). */
  wrt?: number[];
}

export interface GradcheckReport {
  ok: boolean;
  maxAbsError: number;
  maxRelError: number;
  checked: number;
  message: string;
}

const cpuRead = (t: Tensor): Float64Array => Float64Array.from(cpu.readSync(t));

/** A fixed random cotangent so non-scalar outputs are checked through L = Σ v·f(x). */
function cotangentFor(y: Tensor): Tensor {
  return tensor(Float64Array.from(vSeed(y.size)), { shape: y.shape, dtype: y.dtype, device: y.device });
}

function compare(
  what: string,
  analytic: ArrayLike<number>,
  reference: ArrayLike<number>,
  atol: number,
  rtol: number,
): { maxAbs: number; maxRel: number; bad: string | null } {
  let maxAbs = 0;
  let maxRel = 0;
  let bad: string | null = null;
  for (let i = 0; i < reference.length; i++) {
    const err = Math.abs(analytic[i] - reference[i]);
    const rel = err / Math.max(Math.abs(reference[i]), 1e-30);
    if (!(err <= atol + rtol * Math.abs(reference[i])) && !bad)
      bad = `${what}[${i}]: got ${analytic[i]}, expected ${reference[i]} (|err| ${err.toExponential(2)})`;
    maxAbs = Math.max(maxAbs, err);
    if (Math.abs(reference[i]) > atol) maxRel = Math.max(maxRel, rel);
  }
  return { maxAbs, maxRel, bad };
}

/**
 * Checks d(Σ v·f)/dx for each float input of f against central differences, on the cpu backend in
 * float64 (inputs are copied there). Returns a report; `ok` is false with a message on mismatch.
 */
export function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: GradcheckOptions = {},
): GradcheckReport {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-7;
  const rtol = opts.rtol ?? 1e-5;
  return scope(() => {
    const xs = inputs.map((t) =>
      tensor(cpuRead(t), { shape: t.shape, dtype: t.dtype === 'int32' ? 'int32' : 'float64', device: 'cpu' }),
    );
    const wrt = opts.wrt ?? xs.map((x, i) => (x.dtype === 'int32' ? -1 : i)).filter((i) => i >= 0);
    const y0 = noGrad(() => f(...xs));
    const v = cotangentFor(y0);
    const loss = (...args: Tensor[]) =>
      f(...args)
        .mul(v)
        .sum();
    const analytic = grad(
      (...ws) => loss(...xs.map((x, i) => (wrt.includes(i) ? ws[wrt.indexOf(i)] : x))),
      wrt.map((i) => xs[i]),
    );
    let maxAbs = 0;
    let maxRel = 0;
    let checked = 0;
    for (let k = 0; k < wrt.length; k++) {
      const i = wrt[k];
      const base = cpuRead(xs[i]);
      const numeric = new Float64Array(base.length);
      for (let j = 0; j < base.length; j++) {
        const at = (delta: number) => {
          const p = base.slice();
          p[j] += delta;
          const args = xs.map((x, m) => (m === i ? tensor(p, { shape: x.shape, dtype: 'float64', device: 'cpu' }) : x));
          return cpuRead(noGrad(() => loss(...args)))[0];
        };
        numeric[j] = (at(eps) - at(-eps)) / (2 * eps);
      }
      const r = compare(`input ${i} ${shapeStr(xs[i].shape)} grad`, cpuRead(analytic[k]), numeric, atol, rtol);
      maxAbs = Math.max(maxAbs, r.maxAbs);
      maxRel = Math.max(maxRel, r.maxRel);
      checked += base.length;
      if (r.bad) return { ok: false, maxAbsError: maxAbs, maxRelError: maxRel, checked, message: r.bad };
    }
    return { ok: true, maxAbsError: maxAbs, maxRelError: maxRel, checked, message: 'ok' };
  });
}

export interface DeviceCheckOptions {
  atol?: number;
  rtol?: number;
  wrt?: number[];
}

/**
 * Runs f on webgpu (float32) and on cpu (float64) from the same input values, and compares the outputs
 * and the gradients of Σ v·f. Tolerances default to 1e-4 relative + 1e-5 absolute.
 */
export async function gradcheckDevices(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: DeviceCheckOptions = {},
): Promise<GradcheckReport> {
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-4;
  const values = await Promise.all(inputs.map((t) => t.data()));
  const run = async (device: DeviceName) => {
    const dtype = WIDEST_FLOAT[device];
    const xs = inputs.map((t, i) =>
      tensor(Float64Array.from(values[i]), { shape: t.shape, dtype: t.dtype === 'int32' ? 'int32' : dtype, device }),
    );
    const wrt = opts.wrt ?? xs.map((x, i) => (x.dtype === 'int32' ? -1 : i)).filter((i) => i >= 0);
    const y = noGrad(() => f(...xs));
    const vv = Float64Array.from(vSeed(y.size));
    const v = tensor(vv, { shape: y.shape, dtype: y.dtype === 'int32' ? 'int32' : dtype, device });
    const grads =
      y.dtype === 'int32' || wrt.length === 0
        ? []
        : grad(
            (...ws) =>
              f(...xs.map((x, i) => (wrt.includes(i) ? ws[wrt.indexOf(i)] : x)))
                .mul(v)
                .sum(),
            wrt.map((i) => xs[i]),
          );
    const out = [await y.data(), ...(await Promise.all(grads.map((g) => g.data())))];
    [...xs, y, v, ...grads].forEach((t) => t.dispose());
    return out;
  };
  const [gpu, ref] = [await run('webgpu'), await run('cpu')];
  let maxAbs = 0;
  let maxRel = 0;
  let checked = 0;
  for (let k = 0; k < ref.length; k++) {
    const r = compare(k === 0 ? 'output' : `grad ${k - 1}`, gpu[k], ref[k], atol, rtol);
    maxAbs = Math.max(maxAbs, r.maxAbs);
    maxRel = Math.max(maxRel, r.maxRel);
    checked += ref[k].length;
    if (r.bad) return { ok: false, maxAbsError: maxAbs, maxRelError: maxRel, checked, message: r.bad };
  }
  return { ok: true, maxAbsError: maxAbs, maxRelError: maxRel, checked, message: 'ok' };
}

/** Deterministic cotangent values (independent of the global RNG, so both devices see the same). */
function vSeed(n: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s / 4294967296) * 2 - 1;
  });
}
