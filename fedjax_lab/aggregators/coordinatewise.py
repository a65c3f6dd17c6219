"""Coordinate-wise robust aggregators: median and trimmed mean (Yin et al., 2018).

Both sort each coordinate over the present clients (weight > 0); absent clients sort last as
+inf and are never counted (see `_robust_utils`). They work leaf by leaf, so no flattening is
needed and the output keeps each leaf's shape and dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import Aggregator, minority_byzantine


def _unweighted_median(leaf, mask, n):
  """Median over the n present rows of leaf [C, ...]: mean of sorted[(n-1)//2] and sorted[n//2]."""
  ordered = ru.sort_present(leaf, mask)
  lower = jnp.take(ordered, jnp.maximum((n - 1) // 2, 0), axis=0)
  upper = jnp.take(ordered, jnp.maximum(n // 2, 0), axis=0)
  return jnp.where(n > 0, 0.5 * (lower + upper), 0.0)


def _weighted_median(leaf, mask, weights):
  """Weighted median over present rows of leaf [C, ...] with weights [C].

  With sorted values v and cumulative weights c (total W), lower = the first v whose c >= W/2,
  upper = the first v whose c > W/2; returns (lower + upper) / 2. For equal weights this is the
  ordinary median (the two middle values for an even count). Exact for integer-valued weights
  (example counts); float weights may break ties at exactly W/2 either way.
  """
  ordered, w = ru.sort_present(leaf, mask, jnp.where(mask, weights, 0.0).astype(jnp.float32))
  cumulative = jnp.cumsum(w, axis=0)
  half = 0.5 * cumulative[-1]
  num_rows = leaf.shape[0]
  # Count of rows strictly below the threshold = index of the first row at/above it.
  lower_index = jnp.minimum(jnp.sum(cumulative < half, axis=0), num_rows - 1)
  upper_index = jnp.minimum(jnp.sum(cumulative <= half, axis=0), num_rows - 1)
  lower = jnp.take_along_axis(ordered, lower_index[None], axis=0)[0]
  upper = jnp.take_along_axis(ordered, upper_index[None], axis=0)[0]
  return jnp.where(half > 0, 0.5 * (lower + upper), 0.0)


def coordinate_median(updates, weights, weighted: bool = False):
  """Coordinate-wise median of the present clients' updates.

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C] non-negative; clients with weight 0 are excluded.
    weighted: use the weighted median (weights as multiplicities) instead of the plain one.
  Returns:
    pytree, leaves [...] (each leaf's dtype); zeros when no client is present.
  """
  updates, weights = ru.unshard((updates, weights))
  mask = ru.present(weights)
  n = ru.num_present(weights)
  weights = jnp.asarray(weights, jnp.float32)
  if weighted:
    fn = lambda u: _weighted_median(u, mask, weights)
  else:
    fn = lambda u: _unweighted_median(u, mask, n)
  return jax.tree.map(lambda u: fn(u).astype(u.dtype), updates)


def median(weighted: bool = False) -> Aggregator:
  """Coordinate-wise median (Yin, Chen, Ramchandran & Bartlett, ICML 2018, Definition 1).

  For each coordinate, the median of the n present clients' values (the mean of the two middle
  values when n is even). Tolerates any Byzantine fraction below 1/2; stateless.

  Args:
    weighted: if True, the weighted median with `ctx.weights` as multiplicities (our extension;
      the paper's rule is unweighted).
  Returns:
    Aggregator.
  """
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (coordinate_median(updates, ctx.weights, weighted), state),
      needs_honest_majority=True,
      max_byzantine=minority_byzantine)


def _trimmed_mean_leaf(leaf, mask, weights, beta, weighted):
  n = jnp.sum(mask).astype(jnp.int32)
  # floor(beta * n) for every possible n, tabulated in Python so it matches float64 arithmetic.
  trim = jnp.asarray([int(beta * k) for k in range(leaf.shape[0] + 1)], jnp.int32)[n]
  ordered, w = ru.sort_present(leaf, mask, jnp.where(mask, weights, 0.0).astype(jnp.float32))
  keep = ru.rank_mask(leaf.shape[0], trim, n - trim, leaf.ndim)
  coefficient = jnp.where(keep, w if weighted else 1.0, 0.0)
  total = jnp.sum(coefficient, axis=0)
  return ru.safe_divide(jnp.sum(jnp.where(keep, ordered, 0.0) * coefficient, axis=0), total)


def coordinate_trimmed_mean(updates, weights, beta: float, weighted: bool = False):
  """Coordinate-wise beta-trimmed mean over the present clients.

  For each coordinate, drops the floor(beta * n) largest and smallest of the n present values and
  averages the rest.

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C] non-negative; clients with weight 0 are excluded.
    beta: trim fraction per side, 0 <= beta < 1/2.
    weighted: average the kept values with their clients' weights (our extension).
  Returns:
    pytree, leaves [...]; zeros when no client is present.
  """
  updates, weights = ru.unshard((updates, weights))
  mask = ru.present(weights)
  weights = jnp.asarray(weights, jnp.float32)
  return jax.tree.map(
      lambda u: _trimmed_mean_leaf(u, mask, weights, beta, weighted).astype(u.dtype), updates)


def _trimmed_mean_check(beta):
  def condition(num_clients):
    if 2 * int(beta * num_clients) >= num_clients:
      return (f'trimmed_mean: beta={beta} trims 2*floor(beta*n)={2 * int(beta * num_clients)} of '
              f'n={num_clients} clients (clients_per_round); need 2*floor(beta*n) < n.')
    return None
  return ru.breakdown_check(condition)


def trimmed_mean(beta: float, weighted: bool = False, num_clients: int | None = None) -> Aggregator:
  """Coordinate-wise trimmed mean (Yin et al., ICML 2018, Definition 2).

  For each coordinate, removes the largest and smallest beta fraction (floor(beta * n) values per
  side) of the n present clients' values and averages the remaining n - 2 floor(beta * n).
  Breakdown condition: 2 floor(beta * n) < n; it resists up to floor(beta * n) Byzantine clients.

  Args:
    beta: trim fraction per side, 0 <= beta < 0.5.
    weighted: weight the kept values by `ctx.weights` (our extension; the paper is unweighted).
    num_clients: cohort size (clients_per_round), to check the condition before compiling; it is
      re-checked from the updates' static shape when traced.
  Returns:
    Aggregator.
  Raises:
    ValueError: beta outside [0, 0.5) or 2 floor(beta * n) >= n.
  """
  if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0 <= beta < 0.5:
    raise ValueError(f'trimmed_mean: beta={beta!r} must be in [0, 0.5) (trim fraction per side).')
  beta = float(beta)

  def aggregate(updates, state, ctx):
    return coordinate_trimmed_mean(updates, ctx.weights, beta, weighted), state

  return Aggregator(init=lambda params: (),
                    aggregate=ru.validated(_trimmed_mean_check(beta), num_clients, aggregate),
                    needs_honest_majority=True,
                    max_byzantine=lambda n: int(beta * n) if 2 * int(beta * n) < n else -1)
