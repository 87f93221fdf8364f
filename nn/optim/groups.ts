// Parameter groups chosen by the role each layer declares for its parameters (nn/module.ts), never by
// their names.
import { argNumber } from '../../core/args.js';
import type { Tensor } from '../../core/tensor.js';
import type { AnyModule, ParameterRole } from '../module.js';

/** Roles that take no weight decay: biases, and norm gains (decay would pull a norm's scale toward 0). */
export const NO_DECAY_ROLES: ReadonlySet<ParameterRole> = new Set(['bias', 'norm']);

/**
 * Two groups for an optimizer with weight decay: `{ params: weights and embeddings, weightDecay }` and
 * `{ params: biases and norm gains, weightDecay: 0 }`, each in namedParameters order; an empty group
 * is left out. `exclude`: parameters to leave out (frozen, or in a group of their own as CLEX's ODE weights).
 */
export function weightDecayGroups(
  module: AnyModule,
  weightDecay: number,
  opts: { exclude?: Iterable<Tensor> } = {},
): { params: Tensor[]; weightDecay: number }[] {
  argNumber('optim.weightDecayGroups', 'weightDecay', weightDecay, { min: 0 });
  const excluded = new Set(opts.exclude ?? []);
  const decay: Tensor[] = [],
    noDecay: Tensor[] = [];
  for (const [p, role] of module.parameterRoles()) {
    if (!excluded.has(p)) (NO_DECAY_ROLES.has(role) ? noDecay : decay).push(p);
  }
  return [
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}
