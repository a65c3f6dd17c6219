"""Robust aggregators by name, and the Byzantine fraction each can survive.

`get_robust_aggregator(name, byzantine_fraction, clients_per_round, **kwargs)` builds a defence
for a threat model: rules that take f (Krum, Multi-Krum, Bulyan) get f = ceil(fraction * n) unless
given, the trimmed mean gets beta = fraction unless given, and a fraction the rule cannot survive
is a ValueError before anything compiles.
"""

from __future__ import annotations

import inspect
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

# Rules whose guarantee needs an honest majority (breakdown point 1/2 at best). The mean, the
# norm-bounded mean and centered clipping carry no such parameter and are left unchecked.
_HONEST_MAJORITY = ('median', 'trimmed_mean', 'krum', 'multi_krum', 'bulyan', 'geometric_median')
_TAKES_F = ('krum', 'multi_krum', 'bulyan')
_TAKES_NUM_CLIENTS = ('trimmed_mean', 'krum', 'multi_krum', 'bulyan')


def _taking_clients_per_round(builder):
  """`builder` with its cohort-size argument named clients_per_round (every registry builder takes it).

  Builders that check a breakdown condition call the cohort size `num_clients`; the registry calls
  it clients_per_round, the runner's name for the cohort (num_clients is the population). Builders
  without such a condition accept and ignore it. The signature is the builder's own, so the runner
  derives the valid config fields from it.
  """
  signature = inspect.signature(builder)
  if 'clients_per_round' in signature.parameters:
    return builder
  renamed = 'num_clients' in signature.parameters

  def build(*args, clients_per_round: int | None = None, **kwargs):
    if renamed:
      kwargs['num_clients'] = clients_per_round
    return builder(*args, **kwargs)

  cohort = inspect.Parameter('clients_per_round', inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation='int | None')
  build.__signature__ = signature.replace(
      parameters=[p for p in signature.parameters.values() if p.name != 'num_clients'] + [cohort])
  build.__name__ = builder.__name__
  build.__doc__ = builder.__doc__
  return build


# name -> builder(clients_per_round=cohort size, **config.aggregator fields): what the runner uses.
AGGREGATORS: dict[str, Callable[..., Aggregator]] = {
    name: _taking_clients_per_round(builder) for name, builder in ROBUST_AGGREGATORS.items()
}


def num_byzantine(byzantine_fraction: float, clients_per_round: int) -> int:
  """f = ceil(fraction * n), with a small tolerance so 0.2 * 10 is 2, not 3."""
  return int(math.ceil(byzantine_fraction * clients_per_round - 1e-9))


def check_byzantine_fraction(name: str, byzantine_fraction: float) -> None:
  """Raises ValueError if `name` cannot hold against `byzantine_fraction` of Byzantine clients."""
  if not 0 <= byzantine_fraction < 1:
    raise ValueError(f'byzantine_fraction={byzantine_fraction} must be in [0, 1).')
  if name in _HONEST_MAJORITY and byzantine_fraction >= 0.5:
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
  if name in _TAKES_F and 'f' not in kwargs:
    if clients_per_round is None:
      raise ValueError(f'{name}: give f or clients_per_round to derive f from byzantine_fraction.')
    kwargs['f'] = num_byzantine(byzantine_fraction, clients_per_round)
  if name == 'trimmed_mean' and 'beta' not in kwargs:
    kwargs['beta'] = byzantine_fraction
  if name in _TAKES_NUM_CLIENTS and clients_per_round is not None:
    kwargs.setdefault('num_clients', clients_per_round)
  return ROBUST_AGGREGATORS[name](**kwargs)
