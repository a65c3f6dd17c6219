"""DP-FedAvg's server aggregation with central, client-level differential privacy.

McMahan, Ramage, Talwar & Zhang (ICLR 2018), "Learning differentially private recurrent language
models": every participating client's update is clipped to L2 norm C, the clipped updates are
summed with *uniform* weights (an example-weighted sum would let one client's weight raise its
sensitivity above C), Gaussian noise N(0, (sigma C)^2 I) is added to the sum, and the result is
divided by the *expected* number of participants (their fixed-denominator estimator; dividing by
the realised count would make the denominator itself data dependent under Poisson sampling):

    update = (sum_{i participating} clip(u_i, C) + N(0, sigma^2 C^2 I)) / expected_clients_per_round

`ctx.weights > 0` marks participating clients (0: dropped out or padding); the weights' values are
otherwise ignored. A non-participant's slot never enters the sum, whatever it holds (`where`). A
participant whose update holds NaN or Inf contributes the zero vector (it cannot be clipped: it has
no direction); zero is within the clipping ball, so the sensitivity C is unchanged. The epsilon of a run comes from `fedjax_lab.privacy.accounting`.

Every step but the noise is per client, and the noise is added once to the sum, so the aggregator
streams (`StreamingForm`): FedAvg clips each client inside the client loop, keeps a running sum of
the participants' clipped updates, and adds the noise and divides at the end. Memory is then flat in
the cohort size, and large cohorts are where central DP is cheap (the noise on the mean falls as
1 / cohort).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab.aggregators import _robust_utils as ru
from fedjax_lab.aggregators.base import Aggregator, StreamingForm, cast_like, dtypes_of, present_weight, streamed_sums
from fedjax_lab.cohort import RoundContext
from fedjax_lab.transforms.clipping import clip_one, validate_clip_norm
from fedjax_lab.transforms.noise import add_gaussian_noise

PyTree = Any


def dp_sum(updates: PyTree, participating: jax.Array, clip_norm: float, noise_stddev: float | jax.Array,
           rng: jax.Array) -> PyTree:
  """Sum of the participants' clipped updates plus N(0, noise_stddev^2) per coordinate.

  Args:
    updates: pytree, leaves [C, ...].
    participating: [C] bool.
    clip_norm: C > 0.
    noise_stddev: scalar, sigma * C for DP-FedAvg.
    rng: PRNG key of the noise.

  Returns:
    pytree, leaves [...] (float32).
  """
  clipped = jax.vmap(lambda u: _clip_or_zero(u, clip_norm))(updates)
  # where, not a product: a non-participant's slot may hold garbage (inf, nan) and must not leak in.
  summed = ru.masked_sum(clipped, jnp.asarray(participating).astype(jnp.float32))
  return add_gaussian_noise(summed, noise_stddev, rng)


def _clip_or_zero(update: PyTree, clip_norm: float) -> PyTree:
  """One client's update clipped to norm clip_norm; zeros when it holds NaN or Inf."""
  finite = ru.finite_rows(jax.tree.map(lambda u: u[None], update))[0]
  return jax.tree.map(lambda c: jnp.where(finite, c, jnp.zeros_like(c)), clip_one(update, clip_norm))


def dp_mean(clip_norm: float, noise_multiplier: float, expected_clients_per_round: float) -> Aggregator:
  """DP-FedAvg's aggregator (central DP): clip, sum, add N(0, (sigma C)^2), divide by E[cohort].

  Args:
    clip_norm: C > 0, the per-client L2 bound.
    noise_multiplier: sigma >= 0; the noise on the sum has standard deviation sigma * C.
    expected_clients_per_round: > 0; the cohort size for fixed-size sampling, q * num_clients for
      Poisson sampling.

  Returns:
    Aggregator (stateless, streaming) over updates with leaves [C, ...]; uses ctx.rng and
    ctx.weights > 0 as the participation mask. The noise on each output coordinate has standard
    deviation sigma * C / expected_clients_per_round.
  """
  validate_clip_norm(clip_norm)
  if not noise_multiplier >= 0:
    raise ValueError(f'config.dp.noise_multiplier={noise_multiplier} must be >= 0.')
  if not expected_clients_per_round > 0:
    raise ValueError(f'expected_clients_per_round={expected_clients_per_round} must be > 0.')
  noise_stddev = noise_multiplier * clip_norm

  def noisy_mean(sums, rng):
    noisy = add_gaussian_noise(sums, noise_stddev, rng)
    return jax.tree.map(lambda s: s / expected_clients_per_round, noisy)

  def finalize(sums, total_weight, state, ctx: RoundContext):
    del total_weight  # the fixed denominator, not the realised count
    return cast_like(noisy_mean(sums, ctx.rng), ctx.params), state

  form = StreamingForm(client_map=lambda update, weight: _clip_or_zero(update, clip_norm),
                       sum_weight=present_weight, finalize=finalize)

  def aggregate(updates, state, ctx: RoundContext):
    # The streaming form's sum on the stack: stacked and streaming agree bit for bit.
    sums, _ = streamed_sums(form, updates, ctx.weights)
    return cast_like(noisy_mean(sums, ctx.rng), dtypes_of(updates)), state

  return Aggregator(init=lambda params: (), aggregate=aggregate, streaming_form=form,
                    needs_honest_majority=False, max_byzantine=None)
