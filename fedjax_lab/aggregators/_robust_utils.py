"""Order statistics and the traced breakdown check of the robust aggregators.

Private to `fedjax_lab.aggregators`. The helpers shared with transforms and attacks (masks,
weighted sums, distances, placement, argument checks) live in `fedjax_lab.cohort`; they are
re-exported here because the aggregator modules call them as `ru.<name>`.

Sorting puts absent clients (weight 0) last by replacing their values with +inf; counts then say
which positions are real.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from fedjax_lab.cohort import (breakdown_check, check_int, check_positive, clip_factors, cohort_size,
                               combine, mean_weights, mix, num_present, pairwise_sq_distances, present,
                               reshard_like, safe_divide, scale_rows, sq_distances_to, sq_norms, unshard)

__all__ = [
    'breakdown_check', 'check_int', 'check_positive', 'clip_factors', 'cohort_size', 'combine',
    'mean_weights', 'mix', 'num_present', 'pairwise_sq_distances', 'present', 'rank_mask',
    'reshard_like', 'safe_divide', 'scale_rows', 'sort_present', 'sq_distances_to', 'sq_norms',
    'unshard', 'validated',
]


def sort_present(values: jax.Array, mask: jax.Array, *others: jax.Array):
  """Sorts `values` [C, ...] along the client axis with absent clients (mask [C] False) last.

  Absent values become +inf, so the n present values fill positions 0..n-1 in ascending order.
  `others` ([C, ...] or [C]) are permuted alongside (broadcast to values.shape). The sort is
  stable, so ties keep client order.

  Returns:
    sorted values [C, ...] (float32), then each of `others` permuted the same way.
  """
  values = values.astype(jnp.float32)
  expand = lambda a: jnp.broadcast_to(a.reshape(a.shape + (1,) * (values.ndim - a.ndim)), values.shape)
  keys = jnp.where(expand(mask), values, jnp.inf)
  if not others:
    return jnp.sort(keys, axis=0)
  out = jax.lax.sort((keys,) + tuple(expand(o) for o in others), dimension=0, num_keys=1,
                     is_stable=True)
  return out if len(out) > 1 else out[0]


def rank_mask(num_rows: int, start, stop, ndim: int) -> jax.Array:
  """[C, 1, ...] bool, True for rows with start <= index < stop (start, stop may be traced)."""
  index = jnp.arange(num_rows).reshape((num_rows,) + (1,) * (ndim - 1))
  return (index >= start) & (index < stop)


def validated(check: Callable[[int], None], num_clients: int | None, aggregate_fn):
  """Checks the breakdown condition now (if num_clients is known) and on every trace.

  Args:
    check: raises ValueError for a cohort size that violates the rule's condition.
    num_clients: the cohort size given at construction (clients_per_round), or None.
    aggregate_fn: the rule's `fn(updates, state, ctx)`; its first argument has leaves [C, ...].
  Returns:
    `aggregate_fn` wrapped so the static C of its input is checked when traced.
  """
  if num_clients is not None:
    check_int(num_clients, 'clients_per_round', 1)
    check(num_clients)

  def wrapped(updates, state, ctx):
    check(cohort_size(updates))
    return aggregate_fn(updates, state, ctx)

  return wrapped
