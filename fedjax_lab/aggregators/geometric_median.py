"""Geometric median by the smoothed Weiszfeld algorithm (RFA; Pillutla, Kakade & Harchaoui, 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import Aggregator, minority_byzantine


def smoothed_weiszfeld(updates, weights, nu: float, iterations: int, weighted: bool = True):
  """Approximate weighted geometric median of the present clients' updates.

  Starting from the weighted mean v, repeats `iterations` times:
    beta_i = alpha_i / max(nu, ||v - u_i||),   v = sum_i beta_i u_i / sum_i beta_i,
  with alpha the normalised weights (RFA, Algorithm 2).

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C]; clients with weight 0 are excluded.
    nu: smoothing > 0; guards the division when v sits on an update.
    iterations: fixed number of Weiszfeld steps (a static loop under jit).
    weighted: alpha = weights (True, as in RFA) or uniform over present clients.
  Returns:
    pytree, leaves [...].
  """
  updates, weights = ru.unshard((updates, weights))
  alpha = ru.mean_weights(weights, weighted)

  def step(_, point):
    distance = jnp.sqrt(ru.sq_distances_to(updates, point))
    beta = alpha / jnp.maximum(nu, distance)
    return ru.combine(updates, ru.safe_divide(beta, jnp.sum(beta)))

  return jax.lax.fori_loop(0, iterations, step, ru.combine(updates, alpha))


def geometric_median(nu: float = 1e-6, iterations: int = 5, weighted: bool = True) -> Aggregator:
  """Robust federated aggregation (RFA): the geometric median argmin_v sum_i alpha_i ||v - u_i||.

  Pillutla, Kakade & Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022,
  Algorithm 2 (smoothed Weiszfeld, fixed iteration count). Breakdown point 1/2; stateless.

  Args:
    nu: smoothing parameter (> 0).
    iterations: Weiszfeld steps (>= 1); RFA reports a few suffice.
    weighted: weight clients by `ctx.weights` (as in RFA) or uniformly.
  Returns:
    Aggregator.
  """
  ru.check_positive(nu, 'nu')
  ru.check_int(iterations, 'iterations', 1)
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (
          smoothed_weiszfeld(updates, ctx.weights, nu, iterations, weighted), state),
      needs_honest_majority=True,
      max_byzantine=minority_byzantine)
