"""Clipping aggregators: centered clipping (stateful) and the norm-bounded mean.

Non-finite updates. An absent client (weight 0) never enters either rule, whatever it holds. A
present client whose update (or distance to the center) is non-finite is *clipped to nothing*: its
clip factor is 0 (`clip_factors`), so it contributes the zero vector (norm-bounded mean) or no move
away from the center (centered clipping), and it still counts in the denominator. Both are points
inside the clipping ball, so the rule's bound on one client's influence holds, and a NaN can no
longer pass unclipped (a NaN distance is never > radius, so `min(1, tau / d)` alone let it through).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import (Aggregator, StreamingForm, divide_by_total, dtypes_of, present_weight,
                                         streamed_sums)

PyTree = Any


class CenteredClippingState(NamedTuple):
  """center: the previous round's aggregate (leaves shaped like the params), where clipping starts."""

  center: PyTree


def centered_clip(updates, weights, center, tau: float, iterations: int, weighted: bool = False):
  """`iterations` steps of v <- v + sum_i a_i (u_i - v) min(1, tau / ||u_i - v||) from v = center.

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C]; clients with weight 0 are excluded.
    center: pytree, leaves [...], the starting point v_0.
    tau: clipping radius > 0.
    iterations: number of clipping steps L.
    weighted: a_i = normalised weights (True) or 1/n over present clients (the paper).
  Returns:
    pytree, leaves [...] (the center itself when no client is present). A present client at a
    non-finite distance from v is clipped to nothing (it does not move v).
  """
  updates, weights = ru.unshard((updates, weights))
  a = ru.mean_weights(weights, weighted)
  # A present non-finite row has no finite distance to any v: clip factor 0 (it stays in a's 1/n).
  usable = ru.present(weights) & ru.finite_rows(updates)
  # Unusable rows become exact zeros once, so the loop contracts a clean stack (0 * 0, never 0 * NaN).
  updates = ru.zero_rows(updates, usable)

  def step(_, v):
    coefficient = jnp.where(usable, a * ru.clip_factors(ru.sq_distances_to(updates, v), tau), 0.0)
    moved = ru.contract(updates, coefficient)
    keep = 1.0 - jnp.sum(coefficient)
    return jax.tree.map(lambda c, m: (keep * c.astype(jnp.float32) + m.astype(jnp.float32)).astype(c.dtype),
                        v, moved)

  return jax.lax.fori_loop(0, iterations, step, center)


def centered_clipping(tau: float, iterations: int = 1, weighted: bool = False) -> Aggregator:
  """Centered clipping (Karimireddy, He & Jaggi, "Learning from History for Byzantine Robust
  Optimization", ICML 2021, Eq. (CC)).

  v_{l+1} = v_l + (1/n) sum_i (u_i - v_l) min(1, tau / ||u_i - v_l||), for l = 0..L-1, with v_0 the
  previous round's aggregate, carried in `CenteredClippingState.center` (zeros at init).

  Args:
    tau: clipping radius (> 0).
    iterations: L (>= 1); the paper finds L = 1 enough when v_0 is the previous aggregate.
    weighted: replace 1/n by normalised `ctx.weights` (our extension).
  Returns:
    Aggregator with state CenteredClippingState.
  """
  tau = ru.check_positive(tau, 'tau')
  ru.check_int(iterations, 'iterations', 1)

  def init(params):
    return CenteredClippingState(jax.tree.map(jnp.zeros_like, params))

  def aggregate(updates, state, ctx):
    center = jax.tree.map(lambda c, u: c.astype(u.dtype), state.center, updates)
    out = centered_clip(updates, ctx.weights, center, tau, iterations, weighted)
    return out, CenteredClippingState(jax.tree.map(lambda o, c: o.astype(c.dtype), out, state.center))

  return Aggregator(init, aggregate, needs_honest_majority=False, max_byzantine=None)


def _clip_to_norm(update, max_norm: float):
  """One client's update scaled to norm <= max_norm; zeros when its norm is not finite."""
  stacked = jax.tree.map(lambda u: u[None], update)
  factor = ru.clip_factors(ru.sq_norms(stacked), max_norm)[0]
  return jax.tree.map(lambda u: jnp.where(factor > 0, factor * u.astype(jnp.float32), 0.0).astype(u.dtype), update)


def _norm_bounded_form(max_norm: float, weighted: bool) -> StreamingForm:
  return StreamingForm(
      client_map=lambda update, weight: _clip_to_norm(update, max_norm),
      sum_weight=(lambda weight: jnp.asarray(weight, jnp.float32)) if weighted else present_weight,
      finalize=lambda sums, total, state, ctx: (divide_by_total(sums, total, ctx.params), state))


def norm_bounded_mean_aggregate(updates, weights, max_norm: float, weighted: bool = True):
  """Weighted mean of the updates after scaling each to norm <= max_norm. Leaves [C, ...] -> [...].

  The streaming form's sum evaluated on the stack, so both paths agree bit for bit. A present
  update with a non-finite norm counts as the zero vector.
  """
  sums, total = streamed_sums(_norm_bounded_form(max_norm, weighted), updates, weights)
  return divide_by_total(sums, total, dtypes_of(updates))


def norm_bounded_mean(max_norm: float, weighted: bool = True) -> Aggregator:
  """Norm bounding (Sun, Kairouz, Suresh & McMahan, "Can You Really Backdoor Federated
  Learning?", 2019, Sec. 4): clip each update to u_i * min(1, M / ||u_i||), then average.

  Args:
    max_norm: M (> 0).
    weighted: average with `ctx.weights` (FedAvg's example weighting, as in the paper) or uniformly.
  Returns:
    Aggregator (stateless; streams: clipping is per client, then a weighted mean).
  """
  max_norm = ru.check_positive(max_norm, 'max_norm')
  form = _norm_bounded_form(max_norm, weighted)
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (
          norm_bounded_mean_aggregate(updates, ctx.weights, max_norm, weighted), state),
      streaming_form=form,
      needs_honest_majority=False,
      max_byzantine=None)
