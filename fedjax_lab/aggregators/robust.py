"""Robust aggregators by name, and the Byzantine fraction each can survive.

`get_robust_aggregator(name, byzantine_fraction, clients_per_round, **kwargs)` builds a defence
for a threat model: rules that take f (Krum, Multi-Krum, Bulyan) get f = ceil(fraction * n) unless
given, the trimmed mean gets beta = fraction unless given, and a fraction the rule cannot survive
is a ValueError before anything compiles.
"""

from __future__ import annotations

import math
from typing import Callable

from fedjax_lab.aggregators.base import Aggregator, mean
from fedjax_lab.aggregators.clipping import centered_clipping, norm_bounded_mean
from fedjax_lab.aggregators.coordinatewise import median, trimmed_mean
from fedjax_lab.aggregators.geometric_median import geometric_median
from fedjax_lab.aggregators.krum import bulyan, krum, multi_krum

ROBUST_AGGREGATORS: dict[str, Callable[..., Aggregator]] = {
    'mean': mean,
    'median': median,
    'trimmed_mean': trimmed_mean,
    'krum': krum,
    'multi_krum': multi_krum,
    'bulyan': bulyan,
    'geometric_median': geometric_median,
    'centered_clipping': centered_clipping,
    'norm_bounded_mean': norm_bounded_mean,
}

_TAKES_F = ('krum', 'multi_krum', 'bulyan')
_TAKES_NUM_CLIENTS = ('trimmed_mean', 'krum', 'multi_krum', 'bulyan')


def _accepting_num_clients(builder):
  """Wraps a builder that has no breakdown condition so it accepts (and ignores) num_clients."""
  def build(num_clients: int | None = None, **kwargs):
    return builder(**kwargs)
  build.__doc__ = builder.__doc__
  return build


# name -> builder(num_clients=clients_per_round, **config.aggregator fields): what the runner uses.
AGGREGATORS: dict[str, Callable[..., Aggregator]] = {
    name: (builder if name in _TAKES_NUM_CLIENTS else _accepting_num_clients(builder))
    for name, builder in ROBUST_AGGREGATORS.items()
}


def num_byzantine(byzantine_fraction: float, clients_per_round: int) -> int:
  """f = ceil(fraction * n), with a small tolerance so 0.2 * 10 is 2, not 3."""
  return int(math.ceil(byzantine_fraction * clients_per_round - 1e-9))


def check_byzantine_fraction(name: str, byzantine_fraction: float,
                             aggregator: Aggregator | None = None) -> None:
  """Raises ValueError if `aggregator` (named `name`) cannot hold against `byzantine_fraction`.

  The honest-majority condition is read from the aggregator's `needs_honest_majority` trait; with
  no aggregator only the range [0, 1) is checked.
  """
  if not 0 <= byzantine_fraction < 1:
    raise ValueError(f'byzantine_fraction={byzantine_fraction} must be in [0, 1).')
  if aggregator is not None and aggregator.needs_honest_majority and byzantine_fraction >= 0.5:
    raise ValueError(f'byzantine_fraction={byzantine_fraction} >= 0.5: {name} needs an honest '
                     'majority (breakdown point 1/2); use a fraction below 0.5.')


def get_robust_aggregator(name: str, byzantine_fraction: float = 0.0,
                          clients_per_round: int | None = None, **kwargs) -> Aggregator:
  """Builds aggregator `name` (see ROBUST_AGGREGATORS) for a given threat model.

  Args:
    name: config.aggregator.name.
    byzantine_fraction: fraction of Byzantine clients the defence should tolerate.
    clients_per_round: cohort size n; needed to derive f and to check breakdown conditions.
    **kwargs: constructor arguments (override the derived f / beta).
  Returns:
    Aggregator.
  Raises:
    ValueError: unknown name, or a fraction / f / beta beyond the rule's breakdown point.
  """
  if name not in ROBUST_AGGREGATORS:
    raise ValueError(f'Unknown aggregator {name!r} (config.aggregator.name); choose one of '
                     f'{sorted(ROBUST_AGGREGATORS)}.')
  check_byzantine_fraction(name, byzantine_fraction)
  kwargs = dict(kwargs)
  derived = {}
  if name in _TAKES_F and 'f' not in kwargs:
    if clients_per_round is None:
      raise ValueError(f'{name}: give f or clients_per_round to derive f from byzantine_fraction.')
    derived['f'] = num_byzantine(byzantine_fraction, clients_per_round)
  if name == 'trimmed_mean' and 'beta' not in kwargs:
    derived['beta'] = byzantine_fraction
  kwargs.update(derived)
  if name in _TAKES_NUM_CLIENTS and clients_per_round is not None:
    kwargs.setdefault('num_clients', clients_per_round)
  try:
    aggregator = ROBUST_AGGREGATORS[name](**kwargs)
  except ValueError as error:
    if derived and byzantine_fraction >= 0.5:  # the fraction itself is the cause: say so first
      raise ValueError(f'byzantine_fraction={byzantine_fraction} >= 0.5 gives {derived}: {error}') from error
    raise
  check_byzantine_fraction(name, byzantine_fraction, aggregator)
  return aggregator
