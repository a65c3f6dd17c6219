"""Order statistics and the traced breakdown check of the robust aggregators.

Private to `fedjax_lab.aggregators`. The helpers shared with transforms and attacks (masks,
weighted sums, distances, placement, argument checks) live in `fedjax_lab.cohort`; they are
re-exported here because the aggregator modules call them as `ru.<name>`.

Sorting puts absent clients last (a second sort key, so an absent client never ties with a present
+inf); counts then say which positions are real.

Masking, not multiplying: the weighted sums these rules use (`fedjax_lab.cohort.masked_sum`, `combine`,
`mix`) select rows with `jnp.where` before adding them, so an absent client's slot (NaN, Inf, 1e30)
adds exactly 0; a present client whose update is non-finite is handled by each rule explicitly
(`finite_rows` and the rule's docstring).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from fedjax_lab.cohort import (breakdown_check, check_int, check_positive, clip_factors, cohort_size,
                               combine, contract, finite_rows, masked_sum, mean_weights, mix, num_present,
                               pairwise_sq_distances, present, reshard_like, safe_divide, scale_rows,
                               sq_distances_to, sq_norms, unshard, zero_rows)

__all__ = [
    'breakdown_check', 'check_int', 'check_positive', 'clip_factors', 'cohort_size', 'combine', 'contract',
    'finite_rows', 'masked_sum', 'mean_weights', 'mix', 'num_present', 'pairwise_sq_distances', 'present',
    'rank_mask', 'reshard_like', 'safe_divide', 'scale_rows', 'sort_present', 'sq_distances_to', 'sq_norms',
    'unshard', 'validated', 'zero_rows',
]


def sort_present(values: jax.Array, mask: jax.Array, *others: jax.Array):
  """Sorts `values` [C, ...] along the client axis with absent clients (mask [C] False) last.

  The n present values fill positions 0..n-1 in ascending order; absent positions hold +inf.
  Presence is a second sort key, so a present +inf still sorts before every absent client. A
  present NaN has no order: it is sorted as +inf (the largest value, which an order statistic
  with an honest majority ignores). `others` ([C, ...] or [C]) are permuted alongside (broadcast
  to values.shape). The sort is stable, so ties keep client order.

  Returns:
    sorted values [C, ...] (float32), then each of `others` permuted the same way.
  """
  values = values.astype(jnp.float32)
  expand = lambda a: jnp.broadcast_to(a.reshape(a.shape + (1,) * (values.ndim - a.ndim)), values.shape)
  present_here = expand(mask)
  keys = jnp.where(present_here & ~jnp.isnan(values), values, jnp.inf)
  absent_key = (~present_here).astype(jnp.int32)
  out = jax.lax.sort((keys, absent_key) + tuple(expand(o) for o in others), dimension=0, num_keys=2,
                     is_stable=True)
  out = (out[0],) + tuple(out[2:])
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
