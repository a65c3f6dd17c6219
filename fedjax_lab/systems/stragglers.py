"""Straggler models: how much slower than nominal each worker is on each iteration.

A straggler model draws slowdown factors s[t, i] (worker i's compute time on its t-th iteration is
s[t, i] times the nominal time). Draws happen on the host with numpy, seeded, so the same seed gives
the same timeline whatever the simulator that consumes it.

  'none'         s = 1.
  'fixed'        the first `num_slow` workers are always `factor` times slower (a slow machine).
  'bernoulli'    every (iteration, worker) is `factor` times slower with probability `probability`
                 (transient stragglers: "1 % stragglers" is probability 0.01).
  'exponential'  s = 1 + Exp(scale): a shifted exponential, the usual model of a compute time with a
                 deterministic part and a random queueing delay.
  'half_normal'  s = 1 + |N(0, scale^2)|.
  'lognormal'    s = exp(N(0, scale^2)): median 1, heavy right tail (can be faster than nominal).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

DISTRIBUTIONS = ('none', 'fixed', 'bernoulli', 'exponential', 'half_normal', 'lognormal')


class StragglerModel(NamedTuple):
  """Which distribution slowdowns come from, and its parameters.

  Attributes:
    distribution: one of DISTRIBUTIONS.
    factor: slowdown of a slow worker ('fixed', 'bernoulli'), >= 1.
    num_slow: number of permanently slow workers ('fixed'), the first `num_slow` indices.
    probability: chance that one (iteration, worker) straggles ('bernoulli'), in [0, 1].
    scale: spread of the random part ('exponential', 'half_normal', 'lognormal'), >= 0.
  """

  distribution: str = 'none'
  factor: float = 1.0
  num_slow: int = 0
  probability: float = 0.0
  scale: float = 0.0


def validate_stragglers(model: StragglerModel, num_workers: int | None = None) -> None:
  """Raises ValueError naming the field when `model` is not usable (with `num_workers` workers)."""
  if model.distribution not in DISTRIBUTIONS:
    raise ValueError(f'stragglers.distribution={model.distribution!r} is not one of {DISTRIBUTIONS}.')
  if not math.isfinite(model.factor) or model.factor < 1:
    raise ValueError(f'stragglers.factor={model.factor} must be a finite number >= 1.')
  if not 0 <= model.probability <= 1:
    raise ValueError(f'stragglers.probability={model.probability} must lie in [0, 1].')
  if not math.isfinite(model.scale) or model.scale < 0:
    raise ValueError(f'stragglers.scale={model.scale} must be finite and >= 0.')
  if model.num_slow < 0 or (num_workers is not None and model.num_slow > num_workers):
    raise ValueError(f'stragglers.num_slow={model.num_slow} must lie in [0, num_workers={num_workers}].')


def fixed(num_slow: int, factor: float) -> StragglerModel:
  """`num_slow` workers always `factor` times slower."""
  return StragglerModel('fixed', factor=factor, num_slow=num_slow)


def bernoulli(probability: float, factor: float) -> StragglerModel:
  """Each (iteration, worker) `factor` times slower with `probability`."""
  return StragglerModel('bernoulli', factor=factor, probability=probability)


def sample_slowdowns(model: StragglerModel, num_iterations: int, num_workers: int,
                     rng: np.random.Generator | int) -> np.ndarray:
  """Draws slowdown factors.

  Args:
    model: the straggler model.
    num_iterations: T, iterations (draws) per worker.
    num_workers: m.
    rng: numpy Generator or an integer seed.

  Returns:
    slowdowns [T, m] float64, all > 0 (>= 1 except for 'lognormal').
  """
  validate_stragglers(model, num_workers)
  if num_iterations < 0:
    raise ValueError(f'num_iterations={num_iterations} must be >= 0.')
  if num_workers < 1:
    raise ValueError(f'num_workers={num_workers} must be >= 1.')
  rng = np.random.default_rng(rng)
  shape = (num_iterations, num_workers)
  kind = model.distribution
  if kind == 'none':
    return np.ones(shape)
  if kind == 'fixed':
    row = np.where(np.arange(num_workers) < model.num_slow, model.factor, 1.0)
    return np.broadcast_to(row, shape).copy()
  if kind == 'bernoulli':
    return np.where(rng.random(shape) < model.probability, model.factor, 1.0)
  if kind == 'exponential':
    return 1.0 + rng.exponential(model.scale, shape) if model.scale > 0 else np.ones(shape)
  if kind == 'half_normal':
    return 1.0 + np.abs(rng.normal(0.0, model.scale, shape))
  return np.exp(rng.normal(0.0, model.scale, shape))  # lognormal
