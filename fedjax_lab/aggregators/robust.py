"""Robust aggregators by name, and the Byzantine fraction each can survive.

One Byzantine count. A threat model "a fraction of the cohort is Byzantine" becomes one integer
f = ceil(fraction * clients_per_round) (`byzantine_count`), and every robust rule derives its
parameter from that f (`byzantine_arguments`): Krum, Multi-Krum and Bulyan assume f, the trimmed
mean trims f values from each side (beta = f / n, not beta = fraction, which trimmed 2 of 12 at
20 % while Krum assumed 3), and the median and the geometric median check their honest majority
2f < n. f is fixed for the run; with drop-out fewer clients report, so each rule's breakdown
condition is re-evaluated on the reporting clients every round (`Aggregator.breakdown_ok`,
`base.round_metrics`).

`get_robust_aggregator(name, byzantine_fraction, clients_per_round, **kwargs)` builds a defence
for a threat model; `AGGREGATORS[name](clients_per_round=..., byzantine_fraction=..., **fields)` is what
the runner calls with config.aggregator's fields. A fraction the rule cannot survive is a
ValueError before anything compiles.
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

# Rules that take the Byzantine count f (for the median and the geometric median only to check
# their honest majority each round). Each of them needs an honest majority (`needs_honest_majority`).
_TAKES_F = ('median', 'trimmed_mean', 'krum', 'multi_krum', 'bulyan', 'geometric_median')
_TAKES_NUM_CLIENTS = ('trimmed_mean', 'krum', 'multi_krum', 'bulyan')


def num_byzantine(byzantine_fraction: float, clients_per_round: int) -> int:
  """f = ceil(fraction * n), with a small tolerance so 0.2 * 10 is 2, not 3."""
  return int(math.ceil(byzantine_fraction * clients_per_round - 1e-9))


byzantine_count = num_byzantine


def check_byzantine_fraction(name: str, byzantine_fraction: float,
                             aggregator: Aggregator | None = None) -> None:
  """Raises ValueError if `aggregator` (named `name`) cannot hold against `byzantine_fraction`.

  The honest-majority condition is read from the aggregator's `needs_honest_majority` trait; with
  no aggregator only the range [0, 1) is checked.
  """
  if isinstance(byzantine_fraction, bool) or not isinstance(byzantine_fraction, (int, float)) or not (
      0 <= byzantine_fraction < 1):
    raise ValueError(f'byzantine_fraction={byzantine_fraction} must be in [0, 1) '
                     '(config.aggregator.byzantine_fraction).')
  if aggregator is not None and aggregator.needs_honest_majority and byzantine_fraction >= 0.5:
    raise ValueError(f'byzantine_fraction={byzantine_fraction} >= 0.5: {name} needs an honest '
                     'majority (breakdown point 1/2); use a fraction below 0.5.')


def byzantine_arguments(name: str, byzantine_fraction: float, clients_per_round: int | None) -> dict:
  """The constructor arguments aggregator `name` takes from the threat model: {'f': f} or {}.

  The one place a Byzantine fraction becomes a count: f = ceil(fraction * clients_per_round), the
  same f for every robust rule (the trimmed mean trims f per side).

  Args:
    name: config.aggregator.name.
    byzantine_fraction: fraction of the cohort assumed Byzantine, in [0, 1).
    clients_per_round: cohort size n (needed by every rule that takes f).
  Returns:
    dict of keyword arguments for ROBUST_AGGREGATORS[name].
  Raises:
    ValueError: a fraction the rule cannot survive, or no clients_per_round to derive f from.
  """
  check_byzantine_fraction(name, byzantine_fraction)
  if name not in _TAKES_F:
    return {}
  if byzantine_fraction >= 0.5:
    raise ValueError(f'byzantine_fraction={byzantine_fraction} >= 0.5: {name} needs an honest '
                     'majority (breakdown point 1/2); use a fraction below 0.5.')
  if clients_per_round is None:
    raise ValueError(f'{name}: give f or clients_per_round to derive f from byzantine_fraction.')
  return {'f': byzantine_count(byzantine_fraction, clients_per_round)}


def _resolve(name: str, kwargs: dict, byzantine_fraction, clients_per_round) -> dict:
  """kwargs with f derived from byzantine_fraction; an explicit f / beta beside it is refused."""
  kwargs = dict(kwargs)
  if byzantine_fraction is None:
    return kwargs
  given = sorted(set(kwargs) & {'f', 'beta'})
  if given and name in _TAKES_F:
    raise ValueError(f'config.aggregator.byzantine_fraction={byzantine_fraction} and '
                     f'config.aggregator.{given[0]}={kwargs[given[0]]!r} both set the Byzantine count '
                     f'of {name}; keep one.')
  kwargs.update(byzantine_arguments(name, byzantine_fraction, clients_per_round))
  return kwargs


def _runner_builder(name: str, builder):
  """builder(clients_per_round=cohort size, byzantine_fraction=None, **config.aggregator fields).

  The runner's name for the cohort is clients_per_round (num_clients is the population); the
  builders that check a breakdown condition call it num_clients. The signature shown is the
  builder's own (without num_clients) plus clients_per_round and, for the rules that take f,
  byzantine_fraction, so the registry derives the valid config fields from it.
  """
  signature = inspect.signature(builder)
  # A rule that needs f may get it from byzantine_fraction instead, so f is optional in the shown
  # signature (the registry would otherwise require it) and required here when neither is given.
  needs_f = name in _TAKES_F and signature.parameters.get('f', None) is not None and (
      signature.parameters['f'].default is inspect.Parameter.empty)

  def build(clients_per_round: int | None = None, byzantine_fraction: float | None = None, **kwargs):
    if needs_f and byzantine_fraction is None and kwargs.get('f') is None:
      raise ValueError(f"config.aggregator.f is required by aggregator {name!r}; set it (or set "
                       'config.aggregator.byzantine_fraction to derive it from the cohort size).')
    kwargs = _resolve(name, kwargs, byzantine_fraction, clients_per_round)
    if name in _TAKES_NUM_CLIENTS:
      kwargs['num_clients'] = clients_per_round
    return builder(**kwargs)

  extra = [inspect.Parameter('clients_per_round', inspect.Parameter.KEYWORD_ONLY, default=None)]
  if name in _TAKES_F:
    extra.append(inspect.Parameter('byzantine_fraction', inspect.Parameter.KEYWORD_ONLY, default=None))
  own = [p.replace(default=None) if needs_f and p.name == 'f' else p
         for p in signature.parameters.values() if p.name != 'num_clients']
  build.__signature__ = signature.replace(parameters=own + extra)
  build.__name__ = builder.__name__
  build.__doc__ = builder.__doc__
  return build


# name -> builder(clients_per_round=cohort size, byzantine_fraction=None, **config.aggregator
# fields): what the runner uses. With byzantine_fraction every robust rule gets the same f.
AGGREGATORS: dict[str, Callable[..., Aggregator]] = {
    name: _runner_builder(name, builder) for name, builder in ROBUST_AGGREGATORS.items()
}


def get_robust_aggregator(name: str, byzantine_fraction: float = 0.0,
                          clients_per_round: int | None = None, **kwargs) -> Aggregator:
  """Builds aggregator `name` (see ROBUST_AGGREGATORS) for a given threat model.

  Args:
    name: config.aggregator.name.
    byzantine_fraction: fraction of Byzantine clients the defence should tolerate; every rule
      that takes f gets f = byzantine_count(byzantine_fraction, clients_per_round).
    clients_per_round: cohort size n; needed to derive f and to check breakdown conditions.
    **kwargs: constructor arguments (an explicit f, or beta for the trimmed mean, overrides the
      derived f).
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
  if name in _TAKES_F and 'f' not in kwargs and 'beta' not in kwargs:
    derived = byzantine_arguments(name, byzantine_fraction, clients_per_round)
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
