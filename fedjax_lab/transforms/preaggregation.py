"""Pre-aggregation transforms for Byzantine robustness: nearest-neighbour mixing and adaptive
robust clipping. Both map the stacked updates [C, ...] to [C, ...] and go before a robust
aggregator, e.g. `chain(attack, nearest_neighbor_mixing(f))` then `median()`.

Clients with weight 0 in `ctx.weights` are absent: they are neither neighbours nor counted in n,
and their rows pass through unchanged.
"""

from __future__ import annotations

import jax.numpy as jnp

from fedjax_lab import cohort
from fedjax_lab.cohort import RoundContext
from fedjax_lab.transforms.base import Transform, stateless


def _honest_majority_check(name, f):
  def condition(n):
    if not 2 * f < n:
      return (f'{name}: f={f} needs 2f < n clients, got n={n} (clients_per_round); '
              f'lower f to at most {max((n - 1) // 2, 0)}.')
    return None
  return cohort.breakdown_check(condition)


def _with_check(name, f, clients_per_round, fn):
  cohort.check_int(f, 'f', 0)
  check = _honest_majority_check(name, f)
  if clients_per_round is not None:
    cohort.check_int(clients_per_round, 'clients_per_round', 1)
    check(clients_per_round)

  def checked(updates, ctx: RoundContext):
    check(cohort.cohort_size(updates))
    return fn(updates, ctx)

  return stateless(checked)


def nnm_matrix(sq_distances, mask, f: int):
  """[C, C] NNM mixing matrix: row i averages the n - f present updates nearest to u_i.

  Rows of absent clients are the identity. Ties in distance go to the lower client index.
  """
  num = mask.shape[0]
  n = jnp.sum(mask).astype(jnp.int32)
  count = jnp.maximum(n - f, 1)
  distance = jnp.where(mask[None, :], sq_distances, jnp.inf)
  rank = jnp.argsort(jnp.argsort(distance, axis=1, stable=True), axis=1, stable=True)
  chosen = (rank < count) & mask[None, :]
  matrix = chosen.astype(jnp.float32) / count.astype(jnp.float32)
  return jnp.where(mask[:, None], matrix, jnp.eye(num, dtype=jnp.float32))


def nearest_neighbor_mixing(f: int, clients_per_round: int | None = None) -> Transform:
  """Nearest Neighbour Mixing, NNM (Allouah, Farhadkhani, Guerraoui, Gupta, Pinot & Stephan,
  "Fixing by Mixing", AISTATS 2023, Algorithm 1).

  Replaces each update by the average of its n - f nearest neighbours among the n present updates
  (itself included, at distance 0): y_i = (1 / (n - f)) sum_{j in N_i} u_j. Requires 2f < n.

  Args:
    f: assumed number of Byzantine clients (>= 0).
    clients_per_round: cohort size n, to check 2f < n before compiling.
  Returns:
    Transform (stateless), leaves [C, ...] -> [C, ...].
  """
  def fn(updates, ctx):
    gathered, weights = cohort.unshard((updates, ctx.weights))
    mixed = cohort.mix(gathered, nnm_matrix(cohort.pairwise_sq_distances(gathered), cohort.present(weights), f))
    return cohort.reshard_like(mixed, updates)

  return _with_check('nearest_neighbor_mixing', f, clients_per_round, fn)


def arc_num_clipped(n: int, f: int) -> int:
  """k = floor(2 (f / n) (n - f)): how many of n updates ARC clips (0 when n = 0)."""
  return (2 * f * max(n - f, 0)) // n if n > 0 else 0


def arc_factors(sq_norms, mask, f: int):
  """[C] ARC scale factors: the k largest present norms are scaled down to the (k+1)-th largest."""
  num = mask.shape[0]
  n = jnp.sum(mask).astype(jnp.int32)
  k = jnp.asarray([arc_num_clipped(i, f) for i in range(num + 1)], jnp.int32)[n]
  norms_desc = -jnp.sort(jnp.where(mask, -jnp.sqrt(sq_norms), jnp.inf))
  threshold = jnp.take(norms_desc, jnp.minimum(k, num - 1))
  return jnp.where(mask, cohort.clip_factors(sq_norms, threshold), 1.0)


def adaptive_robust_clipping(f: int, clients_per_round: int | None = None) -> Transform:
  """Adaptive Robust Clipping, ARC (Allouah, Guerraoui, Gupta, Pinot & Rizk, "Boosting Robustness
  by Clipping Gradients in Distributed Learning", 2024, Algorithm 1).

  With k = floor(2 (f / n) (n - f)), clips every update to the norm of the (k+1)-th largest:
  the k largest are scaled down to it, the rest are unchanged. Requires 2f < n.

  Args:
    f: assumed number of Byzantine clients (>= 0).
    clients_per_round: cohort size n, to check 2f < n before compiling.
  Returns:
    Transform (stateless), leaves [C, ...] -> [C, ...].
  """
  def fn(updates, ctx):
    gathered, weights = cohort.unshard((updates, ctx.weights))
    factors = arc_factors(cohort.sq_norms(gathered), cohort.present(weights), f)
    return cohort.reshard_like(cohort.scale_rows(gathered, factors), updates)

  return _with_check('adaptive_robust_clipping', f, clients_per_round, fn)


nnm = nearest_neighbor_mixing
arc = adaptive_robust_clipping


# name -> builder(f, clients_per_round=None): config.preaggregation.name (fedjax_lab/runner/registry.py).
PREAGGREGATORS = {
    'nnm': nearest_neighbor_mixing,
    'nearest_neighbor_mixing': nearest_neighbor_mixing,
    'arc': adaptive_robust_clipping,
    'adaptive_robust_clipping': adaptive_robust_clipping,
}
