"""Client-level differential privacy for FedAvg: the pieces and how they wire together.

Central DP (DP-FedAvg, McMahan et al. 2018): clients send clipped updates, the trusted server
adds Gaussian noise to their sum (`fedjax_lab.aggregators.dp_mean`). Epsilon comes from the
subsampled Gaussian mechanism over rounds (`accounting`).

Local DP: each client clips *and* noises its own update before sending it (`local_dp`), so the
server need not be trusted. A client's release is then a Gaussian mechanism on its own update:
replacing its data moves the clipped update by up to 2C, so the effective noise multiplier is
sigma / 2, and it composes over the rounds the client takes part in (no amplification by sampling,
since the server sees who sent what). The server averages the noisy updates uniformly
(`participant_mean`). Local DP needs about sqrt(cohort) times more noise for the same epsilon.

Both use uniform client weights (every participant counts once), not example counts: with
example weights a client's influence, and so the sensitivity, would exceed C.

Sampling: the runner draws cohorts as `config.sampling` says (`fedjax_lab.data.sampling`):
'fixed_size' (default) is a fixed-size cohort without replacement, accounted with the replace-one
relation; 'poisson' has each client join independently with probability q = clients_per_round /
num_clients (`poisson_cohort`, inside a fixed-capacity array so a compiled round keeps its shape),
accounted with add-or-remove-one (RDP, and PLD as `epsilon_pld`), which is tighter. It matches
`sampling='poisson'` exactly unless the binomial count exceeds the capacity, whose probability
`poisson_capacity` bounds (config.sampling_overflow_probability; over a run the delta grows by at
most rounds x that probability). `config.dp.sampling` must equal `config.sampling`, or the
accountant would describe a different mechanism. Under either sampling the server divides the noisy
sum by clients_per_round = q * num_clients, the *expected* cohort, so one client moves the mean by at
most C / (q N) whatever the realised count.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import dp_accounting
import jax
import jax.numpy as jnp

from fedjax_lab.aggregators.base import Aggregator, StreamingForm, divide_by_total, identity_map, present_weight
from fedjax_lab.aggregators.dp import dp_mean
from fedjax_lab.data.sampling import poisson_capacity, poisson_cohort  # noqa: F401  (re-exported)
from fedjax_lab.privacy import accounting
from fedjax_lab.transforms.base import RoundContext, Transform, chain
from fedjax_lab.transforms.clipping import clip_by_client_norm, validate_clip_norm
from fedjax_lab.transforms.noise import gaussian_noise

PyTree = Any
MODES = ('central', 'local')


def local_dp(clip_norm: float, noise_multiplier: float) -> Transform:
  """Local DP at each client: clip to norm C, then add N(0, (sigma C)^2) per coordinate.

  Args:
    clip_norm: C > 0.
    noise_multiplier: sigma >= 0.

  Returns:
    Transform over updates with leaves [C, ...] (stateless).
  """
  validate_clip_norm(clip_norm)
  accounting.validate_noise_multiplier(noise_multiplier)
  return chain(clip_by_client_norm(clip_norm), gaussian_noise(noise_multiplier * clip_norm))


def participant_mean() -> Aggregator:
  """Uniform mean over participating clients (ctx.weights > 0): what the server does under local DP.

  Streams (a running sum of the participants' updates divided by their count), so local DP, whose
  clip-and-noise transform is per-client, runs with memory flat in the cohort size too.
  """

  def aggregate(updates, state, ctx: RoundContext):
    mask = ctx.weights > 0
    count = jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)
    keep = lambda u: jnp.where(mask.reshape((-1,) + (1,) * (u.ndim - 1)), u.astype(jnp.float32), 0.0)
    mean = jax.tree.map(lambda u: (jnp.sum(keep(u), axis=0) / count).astype(u.dtype), updates)
    return mean, state

  def finalize(sums, total_weight, state, ctx: RoundContext):
    return divide_by_total(sums, jnp.maximum(total_weight, 1.0), ctx.params), state

  form = StreamingForm(client_map=identity_map, sum_weight=present_weight, finalize=finalize)
  return Aggregator(init=lambda params: (), aggregate=aggregate, streaming_form=form)


def dp_fedavg_components(clip_norm: float, noise_multiplier: float, clients_per_round: int,
                         mode: str = 'central') -> tuple[Aggregator, Transform | None]:
  """The (aggregator, transform) to pass to `fedjax_lab.algorithms.fedavg.fedavg` for DP-FedAvg.

  Args:
    clip_norm: C > 0.
    noise_multiplier: sigma >= 0.
    clients_per_round: the expected cohort size (the server's fixed denominator).
    mode: 'central' (noise on the sum at the server) or 'local' (noise at every client).

  Returns:
    (aggregator, transform); transform is None for central DP.
  """
  if mode not in MODES:
    raise ValueError(f'config.dp.mode={mode!r} must be one of {MODES}.')
  validate_clip_norm(clip_norm)
  accounting.validate_noise_multiplier(noise_multiplier)
  if clients_per_round < 1:
    raise ValueError(f'config.clients_per_round={clients_per_round} must be >= 1.')
  if mode == 'central':
    return dp_mean(clip_norm, noise_multiplier, clients_per_round), None
  return participant_mean(), local_dp(clip_norm, noise_multiplier)


def local_dp_epsilon(noise_multiplier: float, participations: int, delta: float) -> float:
  """epsilon at delta of one client that sent `participations` locally noised updates.

  Each release is a Gaussian mechanism with sensitivity 2C (replace the client's data) and noise
  sigma C, i.e. multiplier sigma / 2; releases compose (RDP accountant, no sampling amplification).
  """
  accounting.validate_noise_multiplier(noise_multiplier)
  accounting.validate_delta(delta)
  if participations < 0:
    raise ValueError(f'participations={participations} must be >= 0.')
  if participations == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  acc = accounting.make_accountant('fixed_size', 'rdp')  # REPLACE_ONE relation
  acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier / 2),
                                                participations))
  return float(acc.get_epsilon(delta))


# ----------------------------------------------------------------------------- Poisson cohorts


# `poisson_capacity` and `poisson_cohort` live in `fedjax_lab.data.sampling` (the runner draws its
# Poisson cohorts with them); they are re-exported here for the DP study (configs/dp_digits.py).


# ----------------------------------------------------------------------------- noise and epsilon
# Plain arguments; the runner's registry (fedjax_lab/runner/registry.py) passes config.dp's fields.

ENGINE_SAMPLING = 'fixed_size'  # the runner's default config.sampling (fedjax_lab.data.sampling)


def resolve_noise_multiplier(noise_multiplier: float | None = None, target_epsilon: float = 0.0, *,
                             num_clients: int | None = None, clients_per_round: int | None = None,
                             rounds: int | None = None, delta: float = 1e-5, sampling: str = ENGINE_SAMPLING,
                             accountant: str = 'rdp') -> float:
  """sigma: `noise_multiplier`, or calibrated from `target_epsilon` (> 0) for central DP.

  Args:
    noise_multiplier: sigma >= 0 (used when target_epsilon is 0).
    target_epsilon: epsilon to reach after `rounds` rounds at `delta` (0: use noise_multiplier).
    num_clients, clients_per_round, rounds: needed to calibrate.
    delta, sampling, accountant: the accounting the calibration uses.

  Returns:
    sigma (float).
  """
  if target_epsilon:
    if None in (num_clients, clients_per_round, rounds):
      raise ValueError('config.dp.target_epsilon needs num_clients, clients_per_round and rounds to '
                       'calibrate the noise multiplier.')
    return _calibrated(float(target_epsilon), int(num_clients), int(clients_per_round), int(rounds), float(delta),
                       sampling, accountant)
  if noise_multiplier is None:
    raise ValueError('config.dp needs noise_multiplier (>= 0) or target_epsilon (> 0).')
  accounting.validate_noise_multiplier(float(noise_multiplier))
  return float(noise_multiplier)


@functools.lru_cache(maxsize=64)
def _calibrated(target, num_clients, clients_per_round, rounds, delta, sampling, accountant) -> float:
  return accounting.calibrate_noise_multiplier(target, num_clients, clients_per_round, rounds, delta,
                                               sampling, accountant)


def check_sampling(sampling: str | None, engine_sampling: str = ENGINE_SAMPLING) -> str:
  """The sampling the accountant assumes (None: the engine's); refuses one that differs from the engine's."""
  sampling = engine_sampling if sampling is None else sampling
  if sampling != engine_sampling:
    raise ValueError(f'config.dp.sampling={sampling!r} does not match how the cohort is drawn '
                     f'(config.sampling={engine_sampling!r}); the accountant would report the wrong epsilon. '
                     'Set both to the same value.')
  return sampling


def epsilon_reporter(mode: str, noise_multiplier: float, *, clients_per_round: int, num_clients: int,
                     delta: float = 1e-5, sampling: str = ENGINE_SAMPLING,
                     accountant: str = 'rdp') -> Callable[[int], dict]:
  """`round -> {'epsilon': ..., 'delta': ..., 'noise_multiplier': ...}` for the runner's evaluations.

  Central DP: the run's epsilon after `round` rounds (accounting.compute_epsilon with this
  sampling and accountant); with Poisson sampling and the RDP accountant, also 'epsilon_pld' (the
  tighter PLD accountant; dp-accounting has no PLD for fixed-size sampling). Local DP: the epsilon
  of a client that took part in every one of the `round` rounds (an upper bound for every client).

  Args:
    mode: 'central' or 'local'.
    noise_multiplier: sigma (see `resolve_noise_multiplier`).
    clients_per_round, num_clients: cohort and population sizes (central DP's sampling rate).
    delta, sampling, accountant: the accounting.
  """
  if mode not in MODES:
    raise ValueError(f'config.dp.name={mode!r} must be one of {MODES} (or "none").')
  delta = float(delta)
  accounting.validate_delta(delta)
  sigma = float(noise_multiplier)
  accounting.validate_noise_multiplier(sigma)
  if mode == 'central':
    accounting.validate_sampling(num_clients, clients_per_round, sampling, accountant)
    def report(t):
      out = {'epsilon': accounting.compute_epsilon(sigma, num_clients, clients_per_round, t, delta, sampling,
                                                   accountant)}
      if sampling == 'poisson' and accountant == 'rdp':
        out['epsilon_pld'] = accounting.compute_epsilon(sigma, num_clients, clients_per_round, t, delta,
                                                        sampling, 'pld')
      return out
  else:
    report = lambda t: {'epsilon': local_dp_epsilon(sigma, t, delta)}
  return lambda round_index: {**report(int(round_index)), 'delta': delta, 'noise_multiplier': sigma}
