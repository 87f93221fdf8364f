// Autograd graph nodes: what produced a tensor, what it saved, and how to push gradients back.
import type { Tensor } from './tensor.js';

/**
 * Returns one gradient (or null) per input. A rule that must read device values (e.g. the ODE adjoint's
 * adaptive reverse solve) may return a Promise; such graphs need `await t.backwardAsync()`.
 */
export type BackwardFn = (grad: Tensor, saved: Tensor[]) => (Tensor | null)[] | Promise<(Tensor | null)[]>;

export interface NodeInput {
  /** The input's producer (non-leaf), or null. */
  node: Node | null;
  /** The input itself when it is a leaf that requires grad. */
  leaf: Tensor | null;
}

export class Node {
  private refs = 0;
  private freed = false;

  constructor(
    readonly name: string,
    readonly inputs: NodeInput[],
    private backwardFn: BackwardFn | null,
    private saved: Tensor[],
    /** Shape of the output, for error messages and seeding. */
    readonly outShape: readonly number[],
  ) {
    for (const i of inputs) i.node?.retain();
  }

  retain(): void {
    this.refs++;
  }

  /** Drops one reference; when none remain the saved tensors and upstream links are released. */
  release(): void {
    // Iterative: a chain of thousands of nodes (e.g. backprop through an ODE solve) would overflow the stack.
    const pending: Node[] = [this];
    while (pending.length) {
      const n = pending.pop() as Node;
      if (--n.refs > 0) continue;
      n.freeSaved();
      for (const i of n.inputs) if (i.node) pending.push(i.node);
    }
  }

  get isFreed(): boolean {
    return this.freed;
  }

  /** Frees saved activations (after backward without retainGraph). */
  freeSaved(): void {
    if (this.freed) return;
    this.freed = true;
    for (const t of this.saved) t.dispose();
    this.saved = [];
    this.backwardFn = null;
  }

  apply(grad: Tensor): (Tensor | null)[] | Promise<(Tensor | null)[]> {
    if (!this.backwardFn) {
      throw new Error(
        `backward: the graph through '${this.name}' was already freed by an earlier backward(); pass { retainGraph: true } to the first backward() to run backward twice`,
      );
    }
    return this.backwardFn(grad, this.saved);
  }
}
