// Recording ops into the graph, and the reverse pass over an iterative topological order.
import { checkFinite, checkForward, describeBackward, insideRule, raisePendingAnomalies } from './anomaly.js';
import { Node, type BackwardFn, type NodeInput } from './node.js';
import { add, copy, empty, fill } from './primitives.js';
import { isTracked, scope, untrackTensor } from './scope.js';
import { OpError, sameShape, shapeStr } from './shape.js';
import { getBackend } from './device.js';
import { Tensor } from './tensor.js';
import { thenRestore } from './settle.js';
import { argFunction, argTensor, argTensors } from './args.js';

let gradEnabled = true;
/** The nodes recorded while vjp runs its function (vjp frees exactly these afterwards), or null. */
let builtNodes: Node[] | null = null;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording a graph (sync or async). */
export function noGrad<T>(fn: () => T): T {
  argFunction('noGrad', 'fn', fn);
  const prev = gradEnabled;
  gradEnabled = false;
  // async bodies keep grad disabled until they settle
  return thenRestore(fn, () => (gradEnabled = prev));
}

/** A tensor sharing `t`'s storage with no graph history. */
export function alias(t: Tensor): Tensor {
  return new Tensor(t.storage, t.shape, t.strides, t.offset);
}

/**
 * Attaches `out` to the graph when grad is on and some input requires grad.
 * `backward(grad, saved)` returns one gradient (or null) per input, in input order.
 */
export function record(
  name: string,
  out: Tensor,
  inputs: readonly Tensor[],
  backward: BackwardFn,
  save: readonly Tensor[] = [],
): Tensor {
  checkForward(out, name, inputs);
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  const links: NodeInput[] = inputs.map((t) =>
    t.requiresGrad ? { node: t.gradFn, leaf: t.gradFn ? null : t } : { node: null, leaf: null },
  );
  const saved = save.map((t) => {
    const a = alias(t);
    untrackTensor(a);
    return a;
  });
  const node = new Node(name, links, backward, saved, out.shape);
  out.setGradFn(node);
  builtNodes?.push(node);
  return out;
}

/**
 * Records an op with several outputs as one autograd node (record takes one output per node): the
 * outputs hang off a zero-size tensor that carries the joint node, so the joint rule runs once per
 * backward, after every output's rule has handed over its gradient (null where none came).
 */
export function recordJoint(
  name: string,
  outs: Tensor[],
  inputs: readonly Tensor[],
  backward: (gs: (Tensor | null)[], saved: Tensor[]) => (Tensor | null)[],
  save: readonly Tensor[] = [],
): Tensor[] {
  if (outs.length === 1) return [record(name, outs[0], inputs, (g, saved) => backward([g], saved), save)];
  if (!isGradEnabled() || !inputs.some((t) => t.requiresGrad)) return outs;
  const handed: (Tensor | null)[] = outs.map(() => null);
  const token = empty(outs[0].device, outs[0].dtype, [0]);
  record(
    name,
    token,
    inputs,
    (_, saved) => {
      const gs = [...handed];
      handed.fill(null);
      return backward(gs, saved);
    },
    save,
  );
  // Size 0: handing the token its gradient (and autograd summing those) dispatches nothing.
  const recorded = outs.map((o, i) =>
    record(`${name}:output${i}`, o, [token], (g) => {
      handed[i] = g;
      return [empty(g.device, g.dtype, [0])];
    }),
  );
  token.dispose();
  return recorded;
}

interface BackwardOptions {
  retainGraph?: boolean;
  /** When given, gradients are returned for these tensors instead of accumulated into leaves' .grad. */
  capture?: readonly Tensor[];
}

/**
 * Takes a gradient out of the backward scope. Tensors not owned there (shared, or the user's) are copied,
 * and so are strided views (e.g. a broadcast from sum's backward), so every .grad is a dense tensor.
 * A contiguous window of a larger storage is kept as it is (e.g. one slice of the gradient that cat's
 * backward splits): the tensor holds a reference on its storage, so it stays valid when the scope ends
 * and its siblings are disposed; nothing writes a .grad in place while its storage is shared
 * (clipGradNorm copies such gradients first).
 */
function own(g: Tensor): Tensor {
  if (isTracked(g) && !g.isDisposed && g.isContiguous()) {
    untrackTensor(g);
    return g;
  }
  const dense = copy(g);
  untrackTensor(dense);
  return dense;
}

function topoOrder(roots: readonly Node[]): Node[] {
  const order: Node[] = [];
  const visited = new Set<Node>();
  const stack: { node: Node; next: number }[] = [];
  for (const r of roots) {
    if (visited.has(r)) continue;
    visited.add(r);
    stack.push({ node: r, next: 0 });
    while (stack.length) {
      const top = stack[stack.length - 1];
      const inputs = top.node.inputs;
      if (top.next < inputs.length) {
        const child = inputs[top.next++].node;
        if (child && !visited.has(child)) {
          visited.add(child);
          stack.push({ node: child, next: 0 });
        }
      } else {
        order.push(top.node);
        stack.pop();
      }
    }
  }
  return order.reverse(); // outputs first
}

/** The nodes of `order` (outputs first) from which one of `keys` (captured nodes or leaves) is reachable. */
function leadingTo(order: readonly Node[], keys: ReadonlyMap<Tensor | Node, number>): Set<Node> {
  const leads = new Set<Node>();
  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k];
    if (
      node.inputs.some(
        (i) => (i.leaf !== null && keys.has(i.leaf)) || (i.node !== null && (keys.has(i.node) || leads.has(i.node))),
      )
    )
      leads.add(node);
  }
  return leads;
}

type GradList = (Tensor | null)[];
/** The reverse sweep; it yields when a node's rule is asynchronous and resumes with that rule's gradients. */
type Sweep = Generator<{ node: string; pending: Promise<GradList> }, GradList, GradList>;

let asyncSweeps = 0;
/** True while an asynchronous backward (backwardAsync) runs, so rules that must read device values may. */
export function canAwaitInBackward(): boolean {
  return asyncSweeps > 0;
}

function* sweep(roots: readonly Tensor[], seeds: readonly Tensor[], opts: BackwardOptions): Sweep {
  const capture = opts.capture;
  const captured = new Map<Tensor | Node, Tensor>();
  const captureKeys = new Map<Tensor | Node, number>();
  capture?.forEach((t, i) => captureKeys.set(t.gradFn ?? t, i));
  const grads = new Map<Node, Tensor>();
  const leafGrads = new Map<Tensor, Tensor>();
  const addTo = <K>(map: Map<K, Tensor>, key: K, g: Tensor) => {
    const old = map.get(key);
    map.set(key, old ? add(old, g) : g);
  };
  const deliverLeaf = (leaf: Tensor, g: Tensor) => {
    if (!sameShape(g.shape, leaf.shape))
      throw new Error(`backward: internal error, gradient ${shapeStr(g.shape)} for leaf ${shapeStr(leaf.shape)}`);
    if (capture) {
      if (captureKeys.has(leaf)) addTo(captured, leaf, g);
    } else {
      // Summed here and stored at the end: a rule may hand the same tensor to a leaf and to a node
      // (add returns [g, g]), so a leaf's .grad must not replace (and dispose) it mid-sweep.
      addTo(leafGrads, leaf, g);
    }
  };
  const rootNodes: Node[] = [];
  roots.forEach((r, i) => {
    if (r.gradFn) {
      rootNodes.push(r.gradFn);
      addTo(grads, r.gradFn, seeds[i]);
    } else if (r.requiresGrad) deliverLeaf(r, seeds[i]);
  });
  const order = topoOrder(rootNodes);
  // Capturing, only nodes with a captured tensor below them run: what produced a captured tensor is
  // not needed (and may hold rules this sweep cannot run, e.g. asynchronous ones in a synchronous vjp).
  const runs = capture ? leadingTo(order, captureKeys) : null;
  for (const node of order) {
    const g = grads.get(node);
    if (!g) continue;
    if (captureKeys.has(node)) addTo(captured, node, g);
    if (runs && !runs.has(node)) continue;
    const applied = insideRule(() => node.apply(g));
    const inGrads = applied instanceof Promise ? yield { node: node.name, pending: applied } : applied;
    node.inputs.forEach((inp, i) => {
      const gi = inGrads[i];
      if (!gi) return;
      checkFinite(gi, () => describeBackward(node.name, i, gi));
      if (inp.leaf) deliverLeaf(inp.leaf, gi);
      else if (inp.node) addTo(grads, inp.node, gi);
    });
  }
  if (!opts.retainGraph) for (const n of order) n.freeSaved();
  // Gradients outlive the backward scope: computed now, they hold no saved activations alive.
  for (const [leaf, g] of leafGrads) {
    leaf.grad = leaf.grad ? add(leaf.grad, g) : own(g);
    getBackend(leaf.grad.device).materialize(leaf.grad.storage);
  }
  for (const [k, g] of captured) {
    const owned = own(g);
    getBackend(owned.device).materialize(owned.storage);
    captured.set(k, owned);
  }
  return capture ? capture.map((t) => captured.get(t.gradFn ?? t) ?? null) : [];
}

/** The reverse pass. Returns captured gradients (null where no path leads) when `capture` is given. */
export function runBackward(
  roots: readonly Tensor[],
  seeds: readonly Tensor[],
  opts: BackwardOptions = {},
): (Tensor | null)[] {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return scope(() => {
      const step = sweep(roots, seeds, opts).next();
      if (!step.done) {
        step.value.pending.catch(() => {});
        throw new OpError(
          'backward',
          `'${step.value.node}' computes its gradient asynchronously (it reads device values); use \`await loss.backwardAsync()\` instead of backward()`,
        );
      }
      return step.value;
    });
  } finally {
    gradEnabled = prev;
  }
}

/** The reverse pass for graphs holding asynchronous rules (sync rules run as in runBackward). */
export async function runBackwardAsync(
  roots: readonly Tensor[],
  seeds: readonly Tensor[],
  opts: BackwardOptions = {},
): Promise<(Tensor | null)[]> {
  const prev = gradEnabled;
  gradEnabled = false;
  asyncSweeps++;
  try {
    return await scope(async () => {
      const it = sweep(roots, seeds, opts);
      let step = it.next();
      while (!step.done) step = it.next(await step.value.pending);
      await raisePendingAnomalies();
      return step.value;
    });
  } finally {
    asyncSweeps--;
    gradEnabled = prev;
  }
}

export function seedFor(op: string, root: Tensor, gradient?: Tensor): Tensor {
  if (gradient) {
    if (!sameShape(gradient.shape, root.shape))
      throw new OpError(
        op,
        `gradient shape ${shapeStr(gradient.shape)} does not match output shape ${shapeStr(root.shape)}`,
      );
    return gradient;
  }
  if (root.size !== 1) {
    throw new OpError(
      op,
      `grad can be implicitly created only for scalar outputs, got shape ${shapeStr(root.shape)}; pass a gradient tensor of that shape, or reduce first (e.g. .sum())`,
    );
  }
  return fill(root, 1);
}

/** Fresh leaves sharing the inputs' storage, requiring grad, so functional transforms never touch .grad. */
function gradLeaves(inputs: readonly Tensor[]): Tensor[] {
  return inputs.map((t) => {
    const a = alias(t);
    a.requiresGrad = true;
    return a;
  });
}

/** Gradients of a scalar-valued f at `inputs` (like jax.grad), without touching any .grad. */
export function grad(f: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor[] {
  argFunction('grad', 'f', f);
  argTensors('grad', 'inputs', inputs);
  const leaves = gradLeaves(inputs);
  const out = argTensor('grad', 'the value f returned', f(...leaves));
  if (out.size !== 1)
    throw new OpError(
      'grad',
      `f must return a one-element tensor, got shape ${shapeStr(out.shape)}; use vjp for non-scalar outputs`,
    );
  const seed = fill(out, 1);
  const gs = runBackward([out], [seed], { capture: leaves });
  const result = gs.map((g, i) => g ?? fill(inputs[i], 0));
  out.dispose();
  seed.dispose();
  leaves.forEach((l) => l.dispose());
  return result;
}

export interface VjpResult {
  /** f's output (detached). */
  output: Tensor;
  /** Cotangentᵀ·∂output/∂input for each input (zeros where unused). */
  grads: Tensor[];
  /** The same for each extra parameter that f closes over (zeros where unused). */
  paramGrads: Tensor[];
}

/**
 * Vector–Jacobian product: evaluates f(inputs) and pulls `cotangent` back to the inputs and to
 * `params` (tensors f reads from its closure, e.g. module parameters; they must require grad).
 * Only the graph f built is freed: params that are not leaves, what they came from and other tensors
 * f closes over keep theirs, so the same params serve any number of vjps (the ODE adjoint's steps).
 * A param's gradient is the total one, through other params too (as torch.autograd.grad).
 */
export function vjp(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  cotangent: Tensor,
  opts: { params?: readonly Tensor[] } = {},
): VjpResult {
  argFunction('vjp', 'f', f);
  argTensors('vjp', 'inputs', inputs);
  argTensor('vjp', 'cotangent', cotangent);
  const params = argTensors('vjp', 'opts.params', opts.params ?? []);
  for (const p of params) if (!p.requiresGrad) throw new OpError('vjp', `params must require grad (got ${p})`);
  const leaves = gradLeaves(inputs);
  const prev = gradEnabled;
  const outer = builtNodes;
  const built: Node[] = [];
  gradEnabled = true;
  builtNodes = built;
  let out: Tensor;
  try {
    out = argTensor('vjp', 'the value f returned', f(...leaves));
  } finally {
    gradEnabled = prev;
    builtNodes = outer;
  }
  let gs: (Tensor | null)[];
  try {
    gs = runBackward([out], [seedFor('vjp', out, cotangent)], { capture: [...leaves, ...params], retainGraph: true });
  } finally {
    for (const node of built) node.freeSaved();
  }
  const all = gs.map((g, i) => g ?? fill(i < inputs.length ? inputs[i] : params[i - inputs.length], 0));
  const output = alias(out);
  out.dispose();
  leaves.forEach((l) => l.dispose());
  return { output, grads: all.slice(0, inputs.length), paramGrads: all.slice(inputs.length) };
}

declare module './tensor.js' {
  interface Tensor {
    /** backward() for graphs with asynchronous rules (e.g. ode.odeintAdjoint on webgpu); works for any graph. */
    backwardAsync(gradient?: Tensor, opts?: { retainGraph?: boolean }): Promise<void>;
    /**
     * Accumulates d(this)/d(leaf) into every leaf's .grad. `gradient` is required for non-scalar outputs.
     * The graph's saved tensors are freed afterwards unless retainGraph is set.
     */
    backward(gradient?: Tensor, opts?: { retainGraph?: boolean }): void;
  }
}

Tensor.prototype.backward = function (this: Tensor, gradient?: Tensor, opts: { retainGraph?: boolean } = {}): void {
  this.assertAlive('backward');
  if (!this.requiresGrad)
    throw new OpError(
      'backward',
      `tensor ${shapeStr(this.shape)} does not require grad (no input had requiresGrad, or it was made under noGrad)`,
    );
  const seed = seedFor('backward', this, gradient);
  runBackward([this], [seed], opts);
  if (seed !== gradient) seed.dispose();
};

Tensor.prototype.backwardAsync = async function (
  this: Tensor,
  gradient?: Tensor,
  opts: { retainGraph?: boolean } = {},
): Promise<void> {
  this.assertAlive('backwardAsync');
  if (!this.requiresGrad)
    throw new OpError(
      'backwardAsync',
      `tensor ${shapeStr(this.shape)} does not require grad (no input had requiresGrad, or it was made under noGrad)`,
    );
  const seed = seedFor('backwardAsync', this, gradient);
  await runBackwardAsync([this], [seed], opts);
  if (seed !== gradient) seed.dispose();
};
