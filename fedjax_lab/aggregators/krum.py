"""Distance-based robust aggregators: Krum, Multi-Krum (Blanchard et al., 2017) and Bulyan
(El Mhamdi, Guerraoui & Rouault, 2018).

Scores follow Blanchard et al. exactly: client i's score is the sum of squared distances to its
n - f - 2 nearest *other* updates (libraries disagree: some count i itself, some use n - f
neighbours). Only present clients (weight > 0) are scored or counted as neighbours. Ties in the
score go to the lower client index.

Non-finite updates. An absent client never enters a distance, a score or the average, whatever
its slot holds. A present client whose update holds NaN or Inf is infinitely far from everyone:
its distances are +inf, it counts in n (it reported; it is one of the f), and it is never selected
(finite candidates rank first even when their scores are +inf).

Breakdown. `breakdown_ok(n)` is the rule's condition on the clients that reported this round
(n > 2f + 2 for Krum and Multi-Krum, n >= 4f + 3 for Bulyan); `base.round_metrics` reports it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import Aggregator, byzantine_bound


def krum_scores(sq_distances: jax.Array, mask: jax.Array, f: int) -> jax.Array:
  """Krum scores of the clients in `mask`.

  Args:
    sq_distances: [C, C] squared pairwise distances.
    mask: [C] bool, the candidate set (n = mask.sum()).
    f: assumed number of Byzantine clients.
  Returns:
    [C] float32: score(i) = sum of the n - f - 2 smallest ||u_i - u_j||^2 over j != i in mask
    (no neighbours when n - f - 2 <= 0); +inf outside mask.
  """
  num = sq_distances.shape[0]
  n = jnp.sum(mask).astype(jnp.int32)
  neighbours = jnp.clip(n - f - 2, 0, num)
  others = mask[None, :] & ~jnp.eye(num, dtype=bool)
  nearest = jnp.sort(jnp.where(others, sq_distances, jnp.inf), axis=1)
  scores = jnp.sum(jnp.where(jnp.arange(num)[None, :] < neighbours, nearest, 0.0), axis=1)
  return jnp.where(mask, scores, jnp.inf)


def _check_f(f):
  return ru.check_int(f, 'f', 0)


def finite_sq_distances(updates, finite) -> jax.Array:
  """[C, C] pairwise squared distances with +inf wherever a row is non-finite (finite [C] False)
  or the distance overflowed: a non-finite update is infinitely far from every other."""
  sq = ru.pairwise_sq_distances(updates)
  ok = finite[:, None] & finite[None, :] & ~jnp.isnan(sq)
  return jnp.where(ok, sq, jnp.inf)


def _rank(scores, candidate):
  """[C] int32 rank of each client: candidates first by score (ties: lower index), then the rest."""
  order = jnp.lexsort((scores, ~candidate))
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))


def krum_condition_ok(num_reporting, f: int):
  """[] bool: n > 2f + 2 (Krum, Multi-Krum) for the count of reporting clients."""
  return jnp.asarray(num_reporting) > 2 * f + 2


def bulyan_condition_ok(num_reporting, f: int):
  """[] bool: n >= 4f + 3 (Bulyan) for the count of reporting clients."""
  return jnp.asarray(num_reporting) >= 4 * f + 3


def _krum_condition(name, f):
  def condition(n):
    if not n > 2 * f + 2:
      return (f'{name}: f={f} Byzantine clients need n > 2f + 2 = {2 * f + 2} clients, got '
              f'n={n} (clients_per_round); lower f to at most {max((n - 3) // 2, 0)}.')
    return None
  return ru.breakdown_check(condition)


def multi_krum_aggregate(updates, weights, f: int, m: int | None = None, weighted: bool = False):
  """Averages the m present updates with the lowest Krum scores.

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C]; clients with weight 0 are excluded.
    f: assumed number of Byzantine clients.
    m: how many to average (None: n - f, with n the present count); m = 1 is Krum.
    weighted: average the selected updates with their weights instead of uniformly.
  Returns:
    pytree, leaves [...]; zeros when no present client has a finite update.
  """
  updates, weights = ru.unshard((updates, weights))
  mask = ru.present(weights)
  finite = ru.finite_rows(updates)
  n = jnp.sum(mask).astype(jnp.int32)
  scores = krum_scores(finite_sq_distances(updates, finite), mask, f)
  candidate = mask & finite
  rank = _rank(scores, candidate)
  count = jnp.maximum(n - f, 1) if m is None else m
  selected = candidate & (rank < count)
  return ru.combine(updates, ru.mean_weights(jnp.where(selected, weights, 0.0), weighted))


def krum(f: int, num_clients: int | None = None) -> Aggregator:
  """Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017, Sec. 4).

  Returns the update u_i minimising score(i) = sum_{i -> j} ||u_i - u_j||^2, where i -> j ranges
  over the n - f - 2 updates closest to u_i other than itself. Requires n > 2f + 2.

  Args:
    f: assumed number of Byzantine clients (>= 0).
    num_clients: cohort size (clients_per_round), to check n > 2f + 2 before compiling; it is
      re-checked from the updates' static shape when traced.
  Returns:
    Aggregator (stateless, unweighted: weights only mark who is present).
  """
  _check_f(f)
  aggregate = lambda updates, state, ctx: (multi_krum_aggregate(updates, ctx.weights, f, 1), state)
  return Aggregator(lambda params: (), ru.validated(_krum_condition('krum', f), num_clients, aggregate),
                    needs_honest_majority=True, max_byzantine=byzantine_bound(f, 2 * f + 3),
                    breakdown_ok=lambda n: krum_condition_ok(n, f))


def multi_krum(f: int, m: int | None = None, weighted: bool = False,
               num_clients: int | None = None) -> Aggregator:
  """Multi-Krum (Blanchard et al., NeurIPS 2017, Sec. 4): the mean of the m best-scored updates.

  Scores are Krum's, computed once; the m updates with the lowest scores are averaged.

  Args:
    f: assumed number of Byzantine clients (>= 0).
    m: number of updates averaged, 1 <= m <= clients_per_round (None: n - f, the common choice).
    weighted: average the selected updates with `ctx.weights` (the paper averages uniformly).
    num_clients: cohort size, to check n > 2f + 2 (and m <= n) before compiling.
  Returns:
    Aggregator.
  """
  _check_f(f)
  if m is not None:
    ru.check_int(m, 'm', 1)
    if num_clients is not None and m > num_clients:
      raise ValueError(f'multi_krum: m={m} exceeds clients_per_round={num_clients}.')
  aggregate = lambda updates, state, ctx: (
      multi_krum_aggregate(updates, ctx.weights, f, m, weighted), state)
  return Aggregator(lambda params: (),
                    ru.validated(_krum_condition('multi_krum', f), num_clients, aggregate),
                    needs_honest_majority=True, max_byzantine=byzantine_bound(f, 2 * f + 3),
                    breakdown_ok=lambda n: krum_condition_ok(n, f))


def bulyan_select(sq_distances: jax.Array, mask: jax.Array, f: int, finite: jax.Array | None = None
                  ) -> jax.Array:
  """Bulyan's selection: theta = n - 2f rounds of Krum, each removing its pick from the pool.

  Args:
    sq_distances: [C, C] (+inf to and from non-finite updates).
    mask: [C] bool present clients.
    f: assumed Byzantine count.
    finite: [C] bool, clients that may be picked (default: all); the others stay in the pool
      as neighbours at +inf but are never selected.
  Returns:
    [C] bool, the theta selected clients (at least one when a finite client is present).
  """
  num = mask.shape[0]
  finite = jnp.ones_like(mask) if finite is None else finite
  theta = jnp.maximum(jnp.sum(mask).astype(jnp.int32) - 2 * f, 1)

  def body(step, selected):
    remaining = mask & ~selected
    candidate = remaining & finite
    pick = jnp.argmin(_rank(krum_scores(sq_distances, remaining, f), candidate))
    active = (step < theta) & jnp.any(candidate)
    return selected.at[pick].set(selected[pick] | active)

  return jax.lax.fori_loop(0, num, body, jnp.zeros((num,), bool))


def _bulyan_leaf(leaf, selected, theta, beta):
  """Mean of the beta values nearest the median of the selected rows, per coordinate."""
  ordered = ru.sort_present(leaf, selected)
  lower = jnp.take(ordered, (theta - 1) // 2, axis=0)
  upper = jnp.take(ordered, theta // 2, axis=0)
  med = 0.5 * (lower + upper)
  values = leaf.astype(jnp.float32)
  gap, values = ru.sort_present(jnp.abs(values - med), selected, values)
  keep = ru.rank_mask(leaf.shape[0], 0, beta, leaf.ndim)
  return jnp.sum(jnp.where(keep, values, 0.0), axis=0) / beta


def bulyan_aggregate(updates, weights, f: int):
  """Bulyan over the present clients; see `bulyan`. Leaves [C, ...] -> [...]."""
  updates, weights = ru.unshard((updates, weights))
  mask = ru.present(weights)
  finite = ru.finite_rows(updates)
  selected = bulyan_select(finite_sq_distances(updates, finite), mask, f, finite)
  theta = jnp.maximum(jnp.sum(selected).astype(jnp.int32), 1)
  beta = jnp.maximum(theta - 2 * f, 1)
  any_present = jnp.any(mask)
  return jax.tree.map(
      lambda u: jnp.where(any_present, _bulyan_leaf(u, selected, theta, beta), 0.0).astype(u.dtype),
      updates)


def bulyan(f: int, num_clients: int | None = None) -> Aggregator:
  """Bulyan (El Mhamdi, Guerraoui & Rouault, ICML 2018, Sec. 4) on top of Krum.

  1. Select theta = n - 2f updates by applying Krum repeatedly, removing each pick from the pool.
  2. For each coordinate, with m the median of the selected values, average the beta = theta - 2f
     selected values closest to m (ties in distance go to the lower client index).
  Requires n >= 4f + 3.

  Args:
    f: assumed number of Byzantine clients (>= 0).
    num_clients: cohort size (clients_per_round), to check n >= 4f + 3 before compiling; it is
      re-checked from the updates' static shape when traced.
  Returns:
    Aggregator (stateless, unweighted).
  """
  _check_f(f)

  def condition(n):
    if not n >= 4 * f + 3:
      return (f'bulyan: f={f} Byzantine clients need n >= 4f + 3 = {4 * f + 3} clients, got '
              f'n={n} (clients_per_round); lower f to at most {max((n - 3) // 4, 0)}.')
    return None

  aggregate = lambda updates, state, ctx: (bulyan_aggregate(updates, ctx.weights, f), state)
  return Aggregator(lambda params: (), ru.validated(ru.breakdown_check(condition), num_clients, aggregate),
                    needs_honest_majority=True, max_byzantine=byzantine_bound(f, 4 * f + 3),
                    breakdown_ok=lambda n: bulyan_condition_ok(n, f))
