// Shape, stride and broadcasting utilities shared by every backend and op.
export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Error raised by an op: always names the op so the user can find the call. */
export class OpError extends Error {
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = 'OpError';
  }
}

export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = rank - s.length + i;
      const d = s[i];
      if (out[j] === 1) out[j] = d;
      else if (d !== 1 && d !== out[j]) {
        throw new OpError(
          op,
          `shapes ${shapes.map(shapeStr).join(' and ')} cannot be broadcast together (dimension ${j - rank} is ${out[j]} vs ${d}); make the sizes equal or 1`,
        );
      }
    }
  }
  return out;
}

/** Normalises a possibly negative axis, with an error naming the op. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(axis) || a < 0 || a >= Math.max(rank, 1)) {
    throw new OpError(op, `axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return a;
}

export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  if (typeof axes !== 'number' && !(Array.isArray(axes) && axes.every((a) => typeof a === 'number'))) {
    throw new OpError(
      op,
      `axis must be an integer or an array of integers, got ${typeof axes === 'string' ? `the string '${axes}'` : typeof axes}`,
    );
  }
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => normAxis(op, a, rank));
  if (new Set(out).size !== out.length) throw new OpError(op, `repeated axis in [${list.join(', ')}]`);
  return out.sort((x, y) => x - y);
}

export function checkShape(op: string, shape: Shape): number[] {
  if (!Array.isArray(shape))
    throw new OpError(
      op,
      `shape must be an array of sizes, e.g. [2, 3], got ${typeof shape === 'string' ? `the string '${shape}'` : typeof shape}`,
    );
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new OpError(op, `invalid shape ${shapeStr(shape)}: sizes must be non-negative integers`);
  }
  return [...shape];
}
