// Embedding lookup: rows of a [V, D] table picked by int32 ids of any shape.
import { autocastLower } from '../core/autocast.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';

/**
 * weight.indexSelect(0, ids.flatten()) reshaped to [...ids.shape, D]. Out-of-range ids raise where
 * their values are known on the host; the backward (a scatter-add) is deterministic.
 */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  ids.assertAlive('embedding');
  weight.assertAlive('embedding');
  if (ids.dtype !== 'int32')
    throw new OpError('embedding', `ids must be int32, got ${ids.dtype}; use .astype('int32')`);
  if (weight.rank !== 2)
    throw new OpError('embedding', `weight must be [num_embeddings, dim], got ${shapeStr(weight.shape)}`);
  try {
    const rows = weight.indexSelect(0, ids.reshape([-1])).reshape([...ids.shape, weight.shape[1]]);
    // under autocast the rows (not the whole table) go to half precision, as the matmuls they feed
    return autocastLower(rows);
  } catch (e) {
    if (e instanceof OpError && /out of range/.test(e.message)) {
      throw new OpError(
        'embedding',
        `ids ${shapeStr(ids.shape)} reach outside the table of ${weight.shape[0]} rows (${e.message})`,
      );
    }
    throw e;
  }
}
