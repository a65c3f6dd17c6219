"""Config sections -> library builders: registries of name -> builder that pass every field.

A section is `config.<section>`: its `name` picks a builder and every other field is passed to it
as a keyword argument. A builder's parameters are its valid fields (read with inspect.signature),
so registering a builder needs no second list. Before anything is built or compiled, `call`:
  - refuses a field the builder does not take, listing the valid ones
    ("config.aggregator.bogus is not a field of aggregator 'krum'; valid fields: name, f");
  - refuses a missing required argument, naming it (config.aggregator.f for Krum);
  - refuses NaN and infinite numbers, naming the field;
  - re-raises the builder's own ValueError with the section's name when it does not name one.
Values the runner supplies (clients_per_round, num_params, the model, ...) go only to builders
that take them, and a section may not set them. A section may also carry the runner's own fields
(config.attack.fraction, config.topology.gossip): they are valid but not passed to the builder.

This module and fedjax_lab/runner/builders.py are the only places that read config sections;
library functions take plain arguments.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple

import optax

from fedjax_lab import aggregators as aggregators_lib
from fedjax_lab import attacks as attacks_lib
from fedjax_lab.aggregators.base import Aggregator
from fedjax_lab.aggregators.dp import dp_mean
from fedjax_lab.algorithms import decentralized as decentralized_lib
from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.models import models as models_lib
from fedjax_lab.privacy import dp as dp_lib
from fedjax_lab.topology import catalog as catalog_lib
from fedjax_lab.topology import graphs as graphs_lib
from fedjax_lab.topology import mixing as mixing_lib
from fedjax_lab.topology import schedules as schedules_lib
from fedjax_lab.transforms import compression as compression_lib
from fedjax_lab.transforms import preaggregation as preaggregation_lib
from fedjax_lab.transforms.base import Transform

NONE = 'none'  # the name that switches an optional section off
_EMPTY = inspect.Parameter.empty
_KEYWORD = inspect.Parameter.KEYWORD_ONLY

# ---------------------------------------------------------------------------------------------
# Sections and fields.


def section_fields(config, section: str) -> dict[str, Any]:
  """config.<section> as a plain dict ({'name': 'none'} when the config has no such section)."""
  value = config.get(section) if hasattr(config, 'get') else getattr(config, section, None)
  if value is None:
    return {'name': NONE}
  return dict(value.to_dict() if hasattr(value, 'to_dict') else value)


def plain_value(value):
  """Config values as builders expect them: lists -> tuples, ConfigDicts -> dicts."""
  if hasattr(value, 'to_dict'):
    return value.to_dict()
  if isinstance(value, list):
    return tuple(plain_value(v) for v in value)
  return value


def check_finite(field: str, value) -> None:
  """Refuses NaN and +-inf (also inside tuples); `field` is the full config path."""
  if isinstance(value, (list, tuple)):
    for item in value:
      check_finite(field, item)
    return
  if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
    raise ValueError(f'{field}={value} must be a finite number.')


def check_range(field: str, value, low=None, high=None, *, integer: bool = False, low_open: bool = False,
                high_open: bool = False) -> None:
  """Refuses a non-number, NaN/inf, or a value outside [low, high] (open ends with *_open)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or (integer and int(value) != value):
    kind = 'an integer' if integer else 'a number'
    raise ValueError(f'{field}={value!r} must be {kind}.')
  check_finite(field, value)
  below = low is not None and (value <= low if low_open else value < low)
  above = high is not None and (value >= high if high_open else value > high)
  if below or above:
    if high is None:
      where = f'{">" if low_open else ">="} {low}'
    elif low is None:
      where = f'{"<" if high_open else "<="} {high}'
    else:
      where = f'in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    raise ValueError(f'{field}={value} must be {where}.')


def parameters(builder: Callable) -> Mapping[str, inspect.Parameter]:
  """The builder's named parameters; a registry builder must list them (no *args, **kwargs)."""
  params = inspect.signature(builder).parameters
  for p in params.values():
    if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
      raise TypeError(f'registry builder {getattr(builder, "__name__", builder)} takes *{p.name}; give it '
                      'explicit parameters (see `extend_signature`) so its config fields can be checked.')
  return params


def valid_fields(builder: Callable, supplied: Mapping[str, Any] = ()) -> tuple[str, ...]:
  """The config fields `builder` takes: its parameters less the runner's and its reported `name`."""
  return tuple(n for n in parameters(builder) if n not in supplied and n != 'name')


def required_fields(builder: Callable, supplied: Mapping[str, Any] = ()) -> tuple[str, ...]:
  params = parameters(builder)
  return tuple(n for n in valid_fields(builder, supplied) if params[n].default is _EMPTY)


def call(section: str, kind: str, name: str, builder: Callable, fields: Mapping[str, Any],
         supplied: Mapping[str, Any] | None = None, runner_fields: tuple[str, ...] = ()) -> Any:
  """builder(**fields, **the supplied values it takes), after the checks in the module docstring.

  Args:
    section: the config path of the section, e.g. 'config.aggregator'.
    kind: what the builder builds, for messages ('aggregator').
    name: the section's `name`.
    builder: the registered builder.
    fields: the section's fields less `name` and `runner_fields`.
    supplied: values the runner provides (passed when the builder has such a parameter).
    runner_fields: section fields the runner reads itself (listed as valid, never passed).
  """
  supplied = dict(supplied or {})
  params = parameters(builder)
  valid = valid_fields(builder, supplied)
  for field, value in fields.items():
    if field in supplied and field in params:
      raise ValueError(f'{section}.{field} is set by the runner for {kind} {name!r}; remove it from {section}.')
    if field not in valid:
      listed = ', '.join(('name',) + tuple(runner_fields) + valid)
      raise ValueError(f'{section}.{field} is not a field of {kind} {name!r}; valid fields: {listed}.')
    check_finite(f'{section}.{field}', value)
  missing = [f for f in required_fields(builder, supplied) if f not in fields]
  if missing:
    raise ValueError(f'{section}.{missing[0]} is required by {kind} {name!r}; set it, e.g. '
                     f'--{section}.{missing[0]}=VALUE.')
  kwargs = {k: plain_value(v) for k, v in fields.items()}
  kwargs.update({k: v for k, v in supplied.items() if k in params})
  try:
    return builder(**kwargs)
  except ValueError as error:
    if 'config.' in str(error):
      raise
    raise ValueError(f'{section} ({kind} {name!r}): {error}') from error


def build_section(section: str, kind: str, registry: Mapping[str, Callable], fields: Mapping[str, Any],
                  supplied: Mapping[str, Any] | None = None, runner_fields: tuple[str, ...] = ()) -> Any:
  """Looks up fields['name'] in `registry` and `call`s it with the other fields."""
  fields = dict(fields)
  name = fields.pop('name', None)
  if name not in registry:
    raise ValueError(f'Unknown {section}.name={name!r}; choose one of {sorted(registry)}.')
  for field in runner_fields:
    fields.pop(field, None)
  return call(section, kind, name, registry[name], fields, supplied, runner_fields)


def extend_signature(fn: Callable, *sources: Callable, drop: tuple[str, ...] = ()) -> Callable:
  """`fn` (which takes **kwargs) re-signed with its named parameters plus those of `sources`.

  The added parameters are keyword-only with their sources' defaults; `drop` leaves some out.
  So a builder that forwards **kwargs to another still tells the registry its fields.
  """
  own = [p for p in inspect.signature(fn).parameters.values()
         if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
  names = {p.name for p in own} | set(drop)
  extra = []
  for source in sources:
    for p in inspect.signature(source).parameters.values():
      if p.name in names or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        continue
      names.add(p.name)
      extra.append(p.replace(kind=_KEYWORD))

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    return fn(*args, **kwargs)

  wrapper.__signature__ = inspect.Signature(own + extra)
  return wrapper


# ---------------------------------------------------------------------------------------------
# Registries. Each maps a config name to a builder whose parameters are the section's fields.

# config.aggregator: every builder takes clients_per_round (the cohort), supplied by the runner.
AGGREGATORS: dict[str, Callable[..., Aggregator]] = dict(aggregators_lib.AGGREGATORS)


# config.compression.
def _quantize(bits: int = 8, rotate: bool = False) -> Transform:
  return compression_lib.quantize(bits, rotate)


def _topk(num_params: int, num_clients: int, k: int | None = None, fraction: float | None = None,
          error_feedback: bool = True) -> Transform:
  return compression_lib.topk(compression_lib.resolve_k(num_params, k, fraction), num_params, num_clients,
                              error_feedback)


COMPRESSORS: dict[str, Callable[..., Transform]] = {'quantize': _quantize, 'topk': _topk}

# config.preaggregation: builder(f, clients_per_round).
PREAGGREGATORS: dict[str, Callable[..., Transform]] = dict(preaggregation_lib.PREAGGREGATORS)


# config.attack: each builder returns an attacks.Attack(transform, data_attack).
def _attack_of(builder: Callable, part: str) -> Callable[..., attacks_lib.Attack]:
  def build(**kwargs):
    return attacks_lib.Attack(**{part: builder(**kwargs)})

  build.__signature__ = inspect.signature(builder)
  build.__name__ = builder.__name__
  return build


ATTACKS: dict[str, Callable[..., attacks_lib.Attack]] = {
    **{name: _attack_of(b, 'transform') for name, b in attacks_lib.UPDATE_ATTACKS.items()},
    **{name: _attack_of(b, 'data_attack') for name, b in attacks_lib.DATA_ATTACKS.items()},
    'backdoor_boosted': extend_signature(attacks_lib.backdoor_boosted, attacks_lib.backdoor),
}
ATTACK_RUNNER_FIELDS = ('fraction',)  # who is Byzantine: a [K] mask drawn by the runner


# config.dp: each builder returns the pieces of one DP mode.
class Privacy(NamedTuple):
  """aggregator: replaces config.aggregator (central DP) or None; transform: per-client noise (local
  DP) or None; report: `round -> {'epsilon', 'delta', 'noise_multiplier', ...}`."""

  aggregator: Aggregator | None
  transform: Transform | None
  report: Callable[[int], dict]


def _central_dp(clip_norm: float, clients_per_round: int, num_clients: int, rounds: int, engine_sampling: str,
                noise_multiplier: float | None = None, target_epsilon: float = 0.0, delta: float = 1e-5,
                sampling: str | None = None, accountant: str = 'rdp') -> Privacy:
  """DP-FedAvg: clip, sum, Gaussian noise, divide by the cohort (replaces the aggregator)."""
  sampling = dp_lib.check_sampling(sampling, engine_sampling)
  sigma = dp_lib.resolve_noise_multiplier(noise_multiplier, target_epsilon, num_clients=num_clients,
                                          clients_per_round=clients_per_round, rounds=rounds, delta=delta,
                                          sampling=sampling, accountant=accountant)
  report = dp_lib.epsilon_reporter('central', sigma, clients_per_round=clients_per_round, num_clients=num_clients,
                                   delta=delta, sampling=sampling, accountant=accountant)
  return Privacy(dp_mean(float(clip_norm), sigma, clients_per_round), None, report)


def _local_dp(clip_norm: float, clients_per_round: int, num_clients: int, engine_sampling: str,
              noise_multiplier: float | None = None, target_epsilon: float = 0.0, delta: float = 1e-5,
              sampling: str | None = None, accountant: str = 'rdp') -> Privacy:
  """Local DP: every client clips and noises its own update (config.aggregator still aggregates)."""
  if target_epsilon:
    raise ValueError('config.dp.target_epsilon is only supported for name="central"; set '
                     'config.dp.noise_multiplier for local DP.')
  sampling = dp_lib.check_sampling(sampling, engine_sampling)
  sigma = dp_lib.resolve_noise_multiplier(noise_multiplier)
  report = dp_lib.epsilon_reporter('local', sigma, clients_per_round=clients_per_round, num_clients=num_clients,
                                   delta=delta, sampling=sampling, accountant=accountant)
  return Privacy(None, dp_lib.local_dp(float(clip_norm), sigma), report)


PRIVACY: dict[str, Callable[..., Privacy]] = {'central': _central_dp, 'local': _local_dp}


# config.topology: graphs and time-varying schedules, with make_topology's weights / lazy / seed.
def _topology_builder(name: str) -> Callable[..., mixing_lib.Topology]:
  graph = schedules_lib.SCHEDULES.get(name) or graphs_lib.GRAPHS[name]

  def build(num_nodes, **kwargs):
    return catalog_lib.make_topology(name, num_nodes, **kwargs)

  signature = inspect.signature(extend_signature(catalog_lib.make_topology, graph))
  build.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != 'name'])
  build.__name__ = name
  return build


TOPOLOGIES: dict[str, Callable[..., mixing_lib.Topology]] = {
    name: _topology_builder(name) for name in (*graphs_lib.GRAPHS, *schedules_lib.SCHEDULES)}
# config.topology fields the runner passes to the algorithm, not to the graph.
TOPOLOGY_RUNNER_FIELDS = ('gossip', 'allow_disconnected')

# config.algorithm of the decentralized algorithms: builder(model, topology, learning_rate, ...).
DECENTRALIZED: dict[str, Callable[..., Algorithm]] = {
    **decentralized_lib.ALGORITHMS,
    'local_sgd_gossip': extend_signature(decentralized_lib.local_sgd_gossip, decentralized_lib.dpsgd,
                                         drop=('order',)),
}

# config.model: builder(input_shape, num_classes, ...).
MODELS: dict[str, Callable[..., models_lib.Model]] = dict(models_lib.MODELS)


# Server and client optimizers: config.algorithm.server_optimizer / client_optimizer pick one, and
# config.algorithm.server_<field> / client_<field> are its arguments (learning_rate is server_lr /
# client_lr).
SERVER_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    'sgd': lambda learning_rate: optax.sgd(learning_rate),
    'momentum': lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum=momentum),
    'adam': lambda learning_rate, b1=0.9, b2=0.99, eps=1e-3: optax.adam(learning_rate, b1=b1, b2=b2, eps=eps),
    'yogi': lambda learning_rate, b1=0.9, b2=0.99, eps=1e-3: optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps),
    'adagrad': lambda learning_rate, eps=1e-3: optax.adagrad(learning_rate, eps=eps),
}
CLIENT_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    'sgd': lambda learning_rate, momentum=None: optax.sgd(learning_rate, momentum=momentum or None),
    'adam': lambda learning_rate: optax.adam(learning_rate),
}


def build_optimizer(role: str, name: str, learning_rate: float, **fields) -> optax.GradientTransformation:
  """The `role` ('server' or 'client') optimizer `name`; fields set to None count as unset.

  Raises:
    ValueError: an unknown name, a learning rate that is not finite and > 0, or a field the
      optimizer does not take (config.algorithm.<role>_<field>).
  """
  registry = SERVER_OPTIMIZERS if role == 'server' else CLIENT_OPTIMIZERS
  if name not in registry:
    raise ValueError(f'Unknown config.algorithm.{role}_optimizer={name!r}; choose one of {sorted(registry)}.')
  check_range(f'config.algorithm.{role}_lr', learning_rate, 0, low_open=True)
  params = inspect.signature(registry[name]).parameters
  kwargs = {}
  for field, value in fields.items():
    if value is None:
      continue
    if field not in params:
      valid = ', '.join(f'{role}_{p}' for p in params if p != 'learning_rate') or 'none'
      raise ValueError(f'config.algorithm.{role}_{field} is not used by {role}_optimizer={name!r}; its fields: '
                       f'{valid}.')
    check_range(f'config.algorithm.{role}_{field}', value)
    kwargs[field] = value
  return registry[name](learning_rate, **kwargs)


# ---------------------------------------------------------------------------------------------
# Decentralized training from plain dicts (what config.algorithm and config.topology hold).


def build_topology(fields: Mapping[str, Any], num_nodes: int) -> mixing_lib.Topology:
  """The Topology of config.topology (name, weights, lazy, seed and the graph's own arguments).

  `num_nodes` is the number of clients; a config.topology.num_nodes, if set, must equal it.
  """
  fields = dict(fields)
  if fields.get('name', NONE) == NONE:
    raise ValueError('config.topology.name is required for decentralized training (e.g. "ring", "torus", '
                     f'"exponential"; choose one of {sorted(TOPOLOGIES)}).')
  given = fields.pop('num_nodes', num_nodes)
  if given != num_nodes:
    raise ValueError(f'config.topology.num_nodes={given} must equal the number of clients ({num_nodes}).')
  return build_section('config.topology', 'topology', TOPOLOGIES, fields, {'num_nodes': num_nodes},
                       runner_fields=TOPOLOGY_RUNNER_FIELDS + ('num_nodes',))


def build_decentralized(algorithm_fields: Mapping[str, Any], topology_fields: Mapping[str, Any],
                        model: models_lib.Model, num_nodes: int, mesh=None) -> Algorithm:
  """A decentralized algorithm (config.algorithm) over config.topology, one node per client.

  Args:
    algorithm_fields: name (a key of DECENTRALIZED), learning_rate, batch_size, order, local_steps.
    topology_fields: name, weights, lazy, seed, the graph's arguments (max_power, degree,
      edge_probability, period), gossip ('auto', 'dense', 'sparse', 'ppermute'), allow_disconnected.
    model: the model.
    num_nodes: the number of clients (one node each).
    mesh: device mesh, for gossip='ppermute'.
  """
  algorithm_fields = dict(algorithm_fields)
  if algorithm_fields.get('name') not in DECENTRALIZED:
    raise ValueError(f'Unknown config.algorithm.name={algorithm_fields.get("name")!r}; decentralized algorithms '
                     f'are {sorted(DECENTRALIZED)}.')
  topology = build_topology(topology_fields, num_nodes)
  supplied = dict(model=model, topology=topology, mesh=mesh,
                  gossip_impl=topology_fields.get('gossip', 'auto'),
                  allow_disconnected=bool(topology_fields.get('allow_disconnected', False)))
  return build_section('config.algorithm', 'decentralized algorithm', DECENTRALIZED, algorithm_fields, supplied)


def registries() -> dict[str, Mapping[str, Callable]]:
  """Every section registry by config section (for tests and error messages)."""
  return {'aggregator': AGGREGATORS, 'compression': COMPRESSORS, 'preaggregation': PREAGGREGATORS,
          'attack': ATTACKS, 'dp': PRIVACY, 'topology': TOPOLOGIES, 'model': MODELS,
          'decentralized': DECENTRALIZED}
