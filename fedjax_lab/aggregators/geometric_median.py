"""Geometric median by the smoothed Weiszfeld algorithm (RFA; Pillutla, Kakade & Harchaoui, 2022).

Non-finite updates. An absent client never enters, whatever its slot holds. A present client whose
update holds NaN or Inf is infinitely far from every point, so its Weiszfeld weight
alpha_i / ||v - u_i|| is 0: it is left out of the starting mean and of every step (it still counts
as reporting for the breakdown check).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import Aggregator, minority_byzantine
from fedjax_lab.aggregators.coordinatewise import honest_majority_ok


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
    pytree, leaves [...]; zeros when no present client has a finite update.
  """
  updates, weights = ru.unshard((updates, weights))
  usable = ru.present(weights) & ru.finite_rows(updates)
  alpha = ru.mean_weights(jnp.where(usable, weights, 0.0), weighted)
  # Unusable rows become exact zeros once, so the loop contracts a clean stack (0 * 0, never 0 * NaN).
  updates = ru.zero_rows(updates, usable)

  def step(_, point):
    distance = jnp.sqrt(ru.sq_distances_to(updates, point))
    beta = jnp.where(usable, alpha / jnp.maximum(nu, distance), 0.0)
    return ru.contract(updates, ru.safe_divide(beta, jnp.sum(beta)))

  return jax.lax.fori_loop(0, iterations, step, ru.contract(updates, alpha))


def geometric_median(nu: float = 1e-6, iterations: int = 5, weighted: bool = True,
                     f: int | None = None) -> Aggregator:
  """Robust federated aggregation (RFA): the geometric median argmin_v sum_i alpha_i ||v - u_i||.

  Pillutla, Kakade & Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022,
  Algorithm 2 (smoothed Weiszfeld, fixed iteration count). Breakdown point 1/2; stateless.

  Args:
    nu: smoothing parameter (> 0).
    iterations: Weiszfeld steps (>= 1); RFA reports a few suffice.
    weighted: weight clients by `ctx.weights` (as in RFA) or uniformly.
    f: assumed Byzantine count, used only for the breakdown check (honest majority 2f < n on the
      reporting clients, `breakdown_ok`); None: no check.
  Returns:
    Aggregator.
  """
  ru.check_positive(nu, 'nu')
  ru.check_int(iterations, 'iterations', 1)
  if f is not None:
    ru.check_int(f, 'f', 0)
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (
          smoothed_weiszfeld(updates, ctx.weights, nu, iterations, weighted), state),
      needs_honest_majority=True,
      max_byzantine=minority_byzantine,
      breakdown_ok=None if f is None else (lambda n: honest_majority_ok(n, f)))
