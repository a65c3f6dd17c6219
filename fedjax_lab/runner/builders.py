"""From a config to the pieces of a run.

Every section goes through a registry (fedjax_lab/runner/registry.py): its `name` picks a builder,
every other field is passed to it, and a field the builder does not take, a missing required one,
or a NaN is refused with a ValueError naming the field before anything is compiled. The config
layout (configs/base.py holds the run-level fields every config starts from; configs/fedavg_mnist1d.py
is a complete example):

  config.seed, config.rounds, config.eval_every, config.checkpoint_every, config.progress
  config.clients_per_round (the cohort; the population is the data's num_clients), config.dropout_rate
  config.placement, config.chunk_size, config.memory_budget_mb, config.num_devices
  config.sampling ('fixed_size' | 'poisson'), config.sampling_overflow_probability: how cohorts are
    drawn (fedjax_lab/data/sampling.py); 'poisson' has each client join with probability
    clients_per_round / num_clients, in an array of `cohort_size` slots; config.dp.sampling must match
  config.deadline, config.seconds_per_example, config.speed_sigma: optional round deadline; clients whose
    simulated time (examples x epochs x seconds_per_example x log-normal speed) exceeds it drop out
    placement='chunked' with chunk_size=0 and memory_budget_mb=N picks the largest chunk whose
    compiled round needs at most N MiB of XLA temporary memory (`choose_chunk_size`).
  config.data_placement ('device' | 'replicated' | 'split' | 'host'), config.prefetch_depth: where the
    training clients live (see fedjax_lab/runner/train.py and fedjax_lab/data/host.py)
  config.data:       name + keyword arguments of `fedjax_lab.data.datasets.load_dataset`
  config.model:      name (+ hidden, ... keyword arguments of the model builder)
  config.algorithm:  name (ALGORITHMS) and the fields of its builder below: client_lr, local_epochs,
                     batch_size, client_optimizer (+ client_momentum), server_optimizer, server_lr
                     (+ server_momentum, server_b1, server_b2, server_eps), prox_mu, client_lr_decay ...
                     (decentralized names: learning_rate, batch_size, order, local_steps)
  config.aggregator: name (+ its arguments; the cohort size is passed as clients_per_round)
  config.attack, config.compression, config.preaggregation, config.dp: optional sections,
                     name='none' switches them off (attack.fraction: who is Byzantine)
  config.topology:   decentralized algorithms only: name, weights, the graph's arguments, gossip,
                     allow_disconnected (one node per client; configs/dpsgd_digits.py)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import ml_collections

from fedjax_lab import transforms as transforms_lib
from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.models import models as models_lib
from fedjax_lab.runner import registry
from fedjax_lab.runner.registry import NONE, check_range, section_fields
from fedjax_lab.runner import simulated

ConfigDict = ml_collections.ConfigDict

# ---------------------------------------------------------------------------------------------
# Run-level fields: what configs/base.py holds, with the range each must lie in.

SECTIONS = ('data', 'model', 'algorithm', 'aggregator', 'attack', 'compression', 'preaggregation', 'dp',
            'topology')


class _Range(NamedTuple):
  low: float | None = None
  high: float | None = None
  integer: bool = False
  low_open: bool = False
  high_open: bool = False


# field -> its range (None: not a number; checked where it is used).
RUN_FIELDS: dict[str, _Range | None] = {
    'name': None,
    'seed': _Range(0, integer=True),
    'rounds': _Range(1, integer=True),
    'eval_every': _Range(1, integer=True),
    'checkpoint_every': _Range(1, integer=True),
    'progress': None,
    'clients_per_round': _Range(1, integer=True),
    'dropout_rate': _Range(0, 1, high_open=True),
    'sampling': None,
    'sampling_overflow_probability': _Range(0, 1, low_open=True, high_open=True),
    'placement': None,
    'chunk_size': _Range(0, integer=True),
    'memory_budget_mb': _Range(0),
    'num_devices': _Range(0, integer=True),
    'data_placement': None,
    'prefetch_depth': _Range(0, integer=True),
    'deadline': None,  # > 0 or inf: fedjax_lab.data.deadline.validate_deadline
    'seconds_per_example': _Range(0, low_open=True),
    'speed_sigma': _Range(0),
    'max_empty_round_fraction': _Range(0, 1),  # warn above this share of rounds without a participant
    # Studies (fedjax_lab/runner/sweep.py, tasks/, simulated.py, evaluation.py).
    'sweep': None,
    'task': None,
    'study': None,
    'evaluation': None,
    'stragglers': None,
}


def validate_run_fields(config: ConfigDict) -> None:
  """Refuses a top-level field that is neither a run field nor a section, and numbers out of range.

  The config is unlocked (experiments/run.py accepts new fields, so `--config.aggregator.f=1` can
  add one); this is what keeps a typo such as `--config.roudns=5` an error.
  """
  for field in config.keys():
    if field not in RUN_FIELDS and field not in SECTIONS:
      raise ValueError(f'config.{field} is not a field of a run; valid fields: '
                       f'{", ".join(sorted(RUN_FIELDS) + list(SECTIONS))}.')
  for field, spec in RUN_FIELDS.items():
    value = config.get(field)
    if spec is None or value is None:
      continue
    check_range(f'config.{field}', value, spec.low, spec.high, integer=spec.integer, low_open=spec.low_open,
                high_open=spec.high_open)
  deadline = config.get('deadline')
  if deadline is not None:
    from fedjax_lab.data import deadline as deadline_lib
    deadline_lib.validate_deadline(deadline)


def _optional_section(config: ConfigDict, section: str, runner_fields: tuple[str, ...] = ()) -> dict | None:
  """config.<section>'s fields, or None when its name is 'none' (then only runner fields may be set)."""
  fields = section_fields(config, section)
  if fields.get('name', NONE) in (NONE, None):
    extra = sorted(set(fields) - {'name'} - set(runner_fields))
    if extra:
      raise ValueError(f'config.{section}.{extra[0]} is set but config.{section}.name={NONE!r}: set the name '
                       f'(one of {sorted(registry.registries().get(section, {}))}) or remove the field.')
    return None
  return fields


# ---------------------------------------------------------------------------------------------
# Data and model.


def build_dataset(config: ConfigDict):
  """Loads `config.data.name` with the section's other fields as keyword arguments (seed: config.seed)."""
  from fedjax_lab.data import datasets  # imported lazily: it pulls in scikit-learn and mnist1d.
  fields = section_fields(config, 'data')
  name = fields.pop('name', None)
  for field, value in fields.items():
    registry.check_finite(f'config.data.{field}', value)
  fields.setdefault('seed', config.get('seed', 0))
  if name in simulated.DATASETS:  # studies: the conditioned least-squares problem
    return simulated.DATASETS[name](**{k: registry.plain_value(v) for k, v in fields.items()})
  return datasets.load_dataset(name, **{k: registry.plain_value(v) for k, v in fields.items()})


def build_model(config: ConfigDict, input_shape, num_classes: int) -> models_lib.Model:
  """config.model through registry.MODELS (input_shape and num_classes are supplied)."""
  return registry.build_section('config.model', 'model', registry.MODELS, section_fields(config, 'model'),
                                {'input_shape': tuple(input_shape), 'num_classes': num_classes})


# ---------------------------------------------------------------------------------------------
# Aggregators, transforms, attacks and DP.


def build_privacy(config: ConfigDict, num_clients: int) -> registry.Privacy | None:
  """config.dp through registry.PRIVACY (None when config.dp.name is 'none')."""
  fields = _optional_section(config, 'dp')
  if fields is None:
    return None
  supplied = dict(clients_per_round=config.clients_per_round, num_clients=num_clients, rounds=config.rounds,
                  engine_sampling=config.get('sampling', 'fixed_size'))
  return registry.build_section('config.dp', 'DP mode', registry.PRIVACY, fields, supplied)


def build_aggregator(config: ConfigDict, num_clients: int):
  """config.aggregator through registry.AGGREGATORS, or central DP's aggregator; None for the mean.

  None (FedAvg's example-weighted mean) lets a mean stream over the cohort.
  """
  fields = section_fields(config, 'aggregator')
  if fields.get('name') in (NONE, None):
    fields['name'] = 'mean'
  privacy = build_privacy(config, num_clients)
  if privacy is not None and privacy.aggregator is not None:
    if fields != {'name': 'mean'}:
      raise ValueError('config.dp.name="central" replaces the aggregator (clip, sum, noise, divide by the cohort); '
                       f'set config.aggregator.name="mean" with no other fields (got {fields}).')
    return privacy.aggregator
  if fields == {'name': 'mean'}:
    return None
  return registry.build_section('config.aggregator', 'aggregator', registry.AGGREGATORS, fields,
                                {'clients_per_round': config.clients_per_round})


def build_attack(config: ConfigDict, num_classes: int):
  """config.attack through registry.ATTACKS: an attacks.Attack(transform, data_attack), or None."""
  fields = _optional_section(config, 'attack', registry.ATTACK_RUNNER_FIELDS)
  if fields is None:
    return None
  return registry.build_section('config.attack', 'attack', registry.ATTACKS, fields,
                                {'clients_per_round': config.clients_per_round, 'num_classes': num_classes},
                                runner_fields=registry.ATTACK_RUNNER_FIELDS)


def build_transform(config: ConfigDict, num_params: int, num_clients: int, num_classes: int = 10):
  """Chains the configured update transforms: update attack, compression, pre-aggregation, local DP noise.

  Returns None when nothing is configured, which lets a mean aggregator stream.
  """
  parts = []
  attack = build_attack(config, num_classes)
  if attack is not None and attack.transform is not None:
    parts.append(attack.transform)
  compression = _optional_section(config, 'compression')
  if compression is not None:
    parts.append(registry.build_section('config.compression', 'compressor', registry.COMPRESSORS, compression,
                                        {'num_params': num_params, 'num_clients': num_clients}))
  preaggregation = _optional_section(config, 'preaggregation')
  if preaggregation is not None:
    parts.append(registry.build_section('config.preaggregation', 'pre-aggregation', registry.PREAGGREGATORS,
                                        preaggregation, {'clients_per_round': config.clients_per_round}))
  privacy = build_privacy(config, num_clients)
  if privacy is not None and privacy.transform is not None:
    parts.append(privacy.transform)
  if not parts:
    return None
  return parts[0] if len(parts) == 1 else transforms_lib.chain(*parts)


def build_data_attack(config: ConfigDict, num_classes: int):
  attack = build_attack(config, num_classes)
  return None if attack is None else attack.data_attack


# ---------------------------------------------------------------------------------------------
# Algorithms. Each server algorithm's builder lists its config.algorithm fields as parameters
# (registry.call checks the section against them); the first parameters are supplied by the runner.

FEDAVG_FAMILY = ('fedavg', 'fedprox', 'fedsgd', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad')
_FEDOPT_SERVER = {'fedavgm': 'momentum', 'fedadam': 'adam', 'fedyogi': 'yogi', 'fedadagrad': 'adagrad'}
# Decentralized (no server): every client is a node of config.topology, all of them train every round.
DECENTRALIZED = tuple(registry.DECENTRALIZED)
# Simulated systems studies: data-parallel GD and the asynchronous server (fedjax_lab/runner/simulated.py).
ALGORITHMS = FEDAVG_FAMILY + ('scaffold',) + DECENTRALIZED + simulated.ALGORITHMS


def client_lr_schedule(kind: str = 'none', rate: float = 0.0, every: int = 100) -> Callable | None:
  """`round -> scale` for config.algorithm.client_lr_decay ('none', 'inverse', 'inverse_sqrt', 'step')."""
  if kind == 'none':
    return None
  check_range('config.algorithm.client_lr_decay_rate', rate, 0)
  if kind == 'inverse':  # eta_r = eta / (1 + rate * r), the O(1/r) decay of Li et al. (2020)
    return lambda r: 1.0 / (1.0 + rate * r)
  if kind == 'inverse_sqrt':
    return lambda r: 1.0 / (1.0 + rate * r) ** 0.5
  if kind == 'step':  # halve every `client_lr_decay_every` rounds
    check_range('config.algorithm.client_lr_decay_every', every, 1, integer=True)
    return lambda r: 0.5 ** (r // every)
  raise ValueError(f'Unknown config.algorithm.client_lr_decay={kind!r}; '
                   "choose 'none', 'inverse', 'inverse_sqrt' or 'step'.")


def _server_optimizer(name, server_lr, server_momentum, server_b1, server_b2, server_eps):
  return registry.build_optimizer('server', name, server_lr, momentum=server_momentum, b1=server_b1, b2=server_b2,
                                  eps=server_eps)


def _check_local_training(local_epochs, batch_size) -> None:
  check_range('config.algorithm.local_epochs', local_epochs, 1, integer=True)
  if batch_size != -1:
    check_range('config.algorithm.batch_size', batch_size, 1, integer=True)


def _fedavg_builder(variant: str) -> Callable[..., Algorithm]:
  """config.algorithm.name=variant: FedAvg, FedProx, or FedOpt with the variant's server optimizer."""

  def build(model, max_examples, aggregator, transform, data_attack, placement, chunk_size, mesh,
            client_lr: float, local_epochs: int, batch_size: int, client_optimizer: str = 'sgd',
            client_momentum: float | None = None, server_optimizer: str | None = None, server_lr: float = 1.0,
            server_momentum: float | None = None, server_b1: float | None = None, server_b2: float | None = None,
            server_eps: float | None = None, prox_mu: float = 0.0, client_lr_decay: str = 'none',
            client_lr_decay_rate: float = 0.0, client_lr_decay_every: int = 100) -> Algorithm:
    _check_local_training(local_epochs, batch_size)
    check_range('config.algorithm.prox_mu', prox_mu, 0)
    if variant == 'fedprox' and prox_mu <= 0:
      raise ValueError(f'config.algorithm.prox_mu={prox_mu} must be > 0 for FedProx.')
    server_name = server_optimizer or 'sgd'
    if variant in _FEDOPT_SERVER and server_name == 'sgd':
      server_name = _FEDOPT_SERVER[variant]
    server = _server_optimizer(server_name, server_lr, server_momentum, server_b1, server_b2, server_eps)
    client = registry.build_optimizer('client', client_optimizer, client_lr, momentum=client_momentum)
    return fedavg(model, client, server, local_epochs, batch_size, max_examples, aggregator=aggregator,
                  transform=transform, data_attack=data_attack, prox_mu=prox_mu,
                  client_lr_schedule=client_lr_schedule(client_lr_decay, client_lr_decay_rate, client_lr_decay_every),
                  name=variant, placement=placement, chunk_size=chunk_size, mesh=mesh)

  build.__name__ = variant
  return build


def _fedsgd(model, max_examples, aggregator, transform, data_attack, placement, chunk_size, mesh,
            server_optimizer: str = 'sgd', server_lr: float = 1.0, server_momentum: float | None = None,
            server_b1: float | None = None, server_b2: float | None = None,
            server_eps: float | None = None) -> Algorithm:
  """FedSGD: one full-batch gradient per client; only the server optimizer is configurable."""
  server = _server_optimizer(server_optimizer, server_lr, server_momentum, server_b1, server_b2, server_eps)
  return fedsgd(model, server, max_examples, aggregator=aggregator, transform=transform, data_attack=data_attack,
                placement=placement, chunk_size=chunk_size, mesh=mesh)




def _scaffold(model, max_examples, num_clients, aggregator, transform, data_attack, placement, chunk_size, mesh,
              client_lr: float, local_epochs: int, batch_size: int, client_optimizer: str = 'sgd',
              server_optimizer: str = 'sgd', server_lr: float = 1.0, server_momentum: float | None = None,
              server_b1: float | None = None, server_b2: float | None = None, server_eps: float | None = None,
              prox_mu: float = 0.0, client_lr_decay: str = 'none', client_lr_decay_rate: float = 0.0,
              client_lr_decay_every: int = 100) -> Algorithm:
  """SCAFFOLD: plain-SGD local steps (its control-variate update assumes SGD at a fixed step)."""
  del client_lr_decay_rate, client_lr_decay_every  # only read with a decay, which SCAFFOLD refuses
  _check_local_training(local_epochs, batch_size)
  check_range('config.algorithm.client_lr', client_lr, 0, low_open=True)
  for field, value, neutral in (('client_optimizer', client_optimizer, 'sgd'), ('prox_mu', prox_mu, 0.0),
                                ('client_lr_decay', client_lr_decay, 'none')):
    if value != neutral:
      raise ValueError(f'config.algorithm.{field}={value!r} is not supported by SCAFFOLD (its control variates '
                       f'assume plain SGD at a fixed step); set it to {neutral!r}.')
  server = _server_optimizer(server_optimizer, server_lr, server_momentum, server_b1, server_b2, server_eps)
  common = dict(placement=placement, chunk_size=chunk_size, mesh=mesh, aggregator=aggregator, transform=transform,
                data_attack=data_attack)
  return scaffold(model, client_lr, server, local_epochs, batch_size, max_examples, num_clients, **common)


SERVER_ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    **{name: _fedavg_builder(name) for name in FEDAVG_FAMILY if name != 'fedsgd'},
    'fedsgd': _fedsgd,
    'scaffold': _scaffold,
}


def build_decentralized(config: ConfigDict, model: models_lib.Model, num_clients: int, mesh) -> Algorithm:
  """A gossip algorithm over config.topology, one node per client (see algorithms/decentralized.py).

  The runner's cohort is then every client in order, every round: clients_per_round must equal the
  number of clients and nobody drops out (a node that skips a round would need a time-varying W).
  """
  if config.clients_per_round != num_clients:
    raise ValueError(f'config.clients_per_round={config.clients_per_round} must equal the number of clients '
                     f'({num_clients}) for config.algorithm.name={config.algorithm.name!r}: every node trains '
                     'every round.')
  if config.get('dropout_rate', 0.0) != 0.0:
    raise ValueError(f'config.dropout_rate={config.dropout_rate} must be 0 for decentralized training.')
  for section in ('attack', 'compression', 'preaggregation', 'dp'):
    name = section_fields(config, section).get('name', NONE)
    if name != NONE:
      raise ValueError(f'config.{section}.name={name!r} is not supported by the decentralized algorithms; set it '
                       'to "none".')
  aggregator = section_fields(config, 'aggregator')
  if aggregator.get('name', NONE) not in (NONE, 'mean') or len(aggregator) > 1:
    raise ValueError(f'config.aggregator={aggregator} is not used by the decentralized algorithms (gossip mixes '
                     'the nodes); set config.aggregator.name="mean".')
  return registry.build_decentralized(section_fields(config, 'algorithm'), section_fields(config, 'topology'),
                                      model, num_clients, mesh)


_DEADLINE_TAG = 0x0D1E  # folded into the round's step key for the deadline's speed draws


def with_deadline(algorithm: Algorithm, deadline: float, local_epochs: int, seconds_per_example: float,
                  speed_sigma: float) -> Algorithm:
  """Drops each round's stragglers (simulated time > deadline, `fedjax_lab.data.deadline`) before `step`.

  The speed draws use fold_in(step key, tag) and the wrapped step gets its key unchanged, so a run
  with deadline=inf has exactly the numbers of a run without one.
  """
  from fedjax_lab.data import deadline as deadline_lib
  deadline_lib.validate_deadline(deadline)
  if seconds_per_example <= 0:
    raise ValueError(f'config.seconds_per_example={seconds_per_example} must be > 0.')
  if speed_sigma < 0:
    raise ValueError(f'config.speed_sigma={speed_sigma} must be >= 0.')

  def step(state, inputs, rng):
    inputs = deadline_lib.apply_deadline(inputs, jax.random.fold_in(rng, _DEADLINE_TAG), deadline, local_epochs,
                                         seconds_per_example, speed_sigma)
    return algorithm.step(state, inputs, rng)

  return algorithm._replace(step=step)


def build_algorithm(config: ConfigDict, model: models_lib.Model, train_data, num_classes: int, mesh) -> Algorithm:
  """Builds the configured algorithm over `train_data` (a FederatedData).

  With config.placement='chunked', config.chunk_size=0 and config.memory_budget_mb > 0 the chunk
  is picked from the budget first (a few compilations of the round, nothing is run).
  """
  strategy = config.get('placement', 'auto')
  chunk_size = config.get('chunk_size') or None
  budget_mb = config.get('memory_budget_mb', 0) or 0
  placement_lib.validate_placement(strategy, chunk_size, budget_mb)
  if config.algorithm.name in simulated.ALGORITHMS:
    refuse_unhonoured_sections(config)
    return simulated.build_algorithm(config, model, train_data, mesh)
  make = lambda chunk: _build_algorithm(config, model, train_data, num_classes, mesh, chunk)
  if strategy == 'chunked' and chunk_size is None:
    chunk_size = choose_chunk_size(config, make, model, train_data, mesh).chunk_size
  algorithm = make(chunk_size)
  deadline = config.get('deadline', None)
  if deadline is not None and deadline != float('inf'):  # inf (the configs' default): no deadline
    if config.algorithm.name in DECENTRALIZED:
      raise ValueError('config.deadline applies to cohorts of a server; decentralized nodes never drop out.')
    algorithm = with_deadline(algorithm, deadline, config.algorithm.get('local_epochs', 1),
                              config.get('seconds_per_example', 1e-3), config.get('speed_sigma', 0.5))
  return algorithm


def cohort_size(config: ConfigDict, num_clients: int) -> int:
  """Length of every round's cohort arrays: clients_per_round, or the Poisson capacity (config.sampling)."""
  return sampling.cohort_capacity(num_clients, config.clients_per_round, config.get('sampling', 'fixed_size'),
                                  config.get('sampling_overflow_probability', sampling.DEFAULT_OVERFLOW_PROBABILITY))


def _round_shapes(model: models_lib.Model, train_data, clients_per_round: int):
  """Abstract (params, RoundInputs, key) of one round (clients_per_round slots): shapes only."""
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(tuple(shape), dtype)
  x, y = train_data.x, train_data.y
  c = clients_per_round
  data = type(train_data)(spec((c,) + tuple(x.shape[1:]), x.dtype), spec((c,) + tuple(y.shape[1:]), y.dtype),
                          spec((c,), train_data.num_examples.dtype))
  inputs = sampling.RoundInputs(data, spec((c,), 'int32'), spec((c,), bool), spec((c,), bool))
  params = jax.eval_shape(model.init, jax.random.key(0))
  return params, inputs, jax.eval_shape(lambda: jax.random.key(0))


def choose_chunk_size(config: ConfigDict, make: Callable[[int], Algorithm], model: models_lib.Model, train_data,
                      mesh) -> placement_lib.ChunkChoice:
  """The largest chunk whose compiled round fits config.memory_budget_mb of XLA temporary memory.

  The budget bounds the working memory of one compiled `algorithm.step` given its cohort (the
  cohort's data, C x M x features, is an input and not counted); see
  `fedjax_lab.clients.placement.pick_chunk_size` for the search and the fallback.

  Args:
    config: the run config (clients_per_round, memory_budget_mb).
    make: chunk -> Algorithm.
    model: the model (for the parameter shapes).
    train_data: FederatedData (for the client shapes).
    mesh: optional client mesh; the chunk is per device.

  Returns:
    ChunkChoice.
  """
  slots = cohort_size(config, train_data.num_clients)
  params, inputs, key = _round_shapes(model, train_data, slots)

  def measure(chunk):
    algorithm = make(chunk)
    state = jax.eval_shape(algorithm.init, params)
    return placement_lib.compiled_temp_bytes(algorithm.step, state, inputs, key)

  devices = placement_lib.num_mesh_clients(mesh)
  max_chunk = -(-slots // devices)
  model_bytes = sum(math.prod(p.shape) * p.dtype.itemsize for p in jax.tree.leaves(params))
  client_bytes = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in jax.tree.leaves(inputs.data))
  hint = (f'If the aggregator or a transform needs the whole stack (not streaming), that alone is '
          f'clients_per_round x model bytes = {config.clients_per_round * model_bytes / 2**20:.1f} MiB '
          '(see fedjax_lab.algorithms.fedavg).')
  return placement_lib.pick_chunk_size(measure, int(config.memory_budget_mb * 2 ** 20), max_chunk,
                                       fallback_bytes_per_client=client_bytes + 4 * model_bytes, hint=hint)


# Optional sections (switched on by their `name`) and optional config.algorithm fields, and what an
# algorithm that cannot apply one says when it refuses it.
_SECTIONS = ('aggregator', 'attack', 'compression', 'dp', 'preaggregation', 'topology')


def _is_set(config: ConfigDict, field: str):
  """The value of an optional section or algorithm field when it asks for something, else None."""
  if field == 'aggregator':
    name = section_fields(config, 'aggregator').get('name', 'mean')
    return None if name in ('mean', 'none', None) else name
  if field in _SECTIONS:
    name = section_fields(config, field).get('name', 'none')
    return None if name in ('none', None) else name
  value = config.algorithm.get(field)
  unset = {'prox_mu': (None, 0, 0.0), 'client_lr_decay': (None, 'none'), 'client_optimizer': (None, 'sgd'),
           'client_momentum': (None, 0, 0.0)}[field]
  return None if value in unset else value


_SERVER_REFUSES = {'topology': 'server algorithms do not gossip; set it to "none" or choose a decentralized '
                               f'config.algorithm.name ({", ".join(DECENTRALIZED)})'}
_SCAFFOLD_REFUSES = {
    **_SERVER_REFUSES,
    'dp': 'SCAFFOLD clients also send delta_c, a deterministic function of the same local model, in the '
          'clear, so noising delta_y alone gives no privacy guarantee; use a FedAvg-family algorithm for DP',
    'prox_mu': "SCAFFOLD's control variates already correct client drift and its variate update assumes "
               'plain SGD steps; set it to 0',
    'client_optimizer': "SCAFFOLD's variate update (option II) assumes plain SGD local steps; set it to 'sgd'",
    'client_momentum': "SCAFFOLD's variate update (option II) assumes plain SGD local steps; set it to 0",
}
_FEDSGD_REFUSES = {
    **_SERVER_REFUSES,
    'prox_mu': 'a FedSGD client takes one step from the global model, where the proximal term is 0; set it to 0',
    'client_lr_decay': "a FedSGD client takes one full-batch step of size 1 (the server optimizer's learning "
                       "rate is the step size); set it to 'none'",
    'client_optimizer': "a FedSGD client sends its gradient (one plain SGD step of size 1); set it to 'sgd'",
    'client_momentum': 'a FedSGD client sends its gradient (one plain SGD step of size 1); set it to 0',
}
_DECENTRALIZED_REFUSES = {
    field: 'decentralized nodes have no server to aggregate, and train with config.algorithm.learning_rate '
           '(plain SGD); set it to its default'
    for field in ('aggregator', 'attack', 'compression', 'dp', 'preaggregation', 'prox_mu', 'client_lr_decay',
                  'client_optimizer', 'client_momentum')}

_SIMULATED_REFUSES = {
    field: 'a simulated cluster of workers (fedjax_lab/runner/simulated.py) averages or applies plain '
           'gradients as they arrive, with step config.algorithm.learning_rate, and config.stragglers decides '
           'who is slow; set it to its default'
    for field in ('aggregator', 'attack', 'compression', 'dp', 'preaggregation', 'topology', 'prox_mu',
                  'client_lr_decay', 'client_optimizer', 'client_momentum')}


def refuse_unhonoured_sections(config: ConfigDict) -> None:
  """Raises ValueError naming the first config field the configured algorithm would not apply.

  No section is ever silently ignored: each one either changes the run or is refused here, before
  anything is built or compiled (tests/runner/test_sections_honoured.py checks every pair).
  """
  name = config.algorithm.name
  if name == 'scaffold':
    refused = _SCAFFOLD_REFUSES
  elif name == 'fedsgd':
    refused = _FEDSGD_REFUSES
  elif name in DECENTRALIZED:
    refused = _DECENTRALIZED_REFUSES
  elif name in simulated.ALGORITHMS:
    refused = _SIMULATED_REFUSES
  else:
    refused = _SERVER_REFUSES
  for field, why in refused.items():
    value = _is_set(config, field)
    if value is not None:
      where = field if field in _SECTIONS else f'algorithm.{field}'
      suffix = '.name' if field in _SECTIONS else ''
      raise ValueError(f'config.{where}{suffix}={value!r} is not supported by config.algorithm.name={name!r}: '
                       f'{why}.')


def _build_algorithm(config: ConfigDict, model: models_lib.Model, train_data, num_classes: int, mesh,
                     chunk_size: int | None) -> Algorithm:
  fields = section_fields(config, 'algorithm')
  name = fields.get('name')
  if name not in ALGORITHMS:
    raise ValueError(f'Unknown config.algorithm.name={name!r}; choose one of {sorted(ALGORITHMS)}.')
  refuse_unhonoured_sections(config)
  if name in DECENTRALIZED:
    return build_decentralized(config, model, train_data.num_clients, mesh)
  topology = section_fields(config, 'topology')
  if topology.get('name', NONE) != NONE:
    raise ValueError(f'config.topology.name={topology["name"]!r} applies to the decentralized algorithms '
                     f'({", ".join(DECENTRALIZED)}), not to {name!r}; set it to "none".')
  num_params = models_lib.num_params(model.init(jax.random.key(0)))
  supplied = dict(model=model, max_examples=train_data.max_examples, num_clients=train_data.num_clients,
                  aggregator=build_aggregator(config, train_data.num_clients),
                  transform=build_transform(config, num_params, train_data.num_clients, num_classes),
                  data_attack=build_data_attack(config, num_classes),
                  placement=config.get('placement', 'auto'), chunk_size=chunk_size, mesh=mesh)
  return registry.build_section('config.algorithm', 'algorithm', SERVER_ALGORITHMS, fields, supplied)


def validate_run_config(config: ConfigDict, num_clients: int) -> None:
  """Cheap checks of the run-level fields (the builders check their own sections)."""
  validate_run_fields(config)
  sampling.validate_sampling(num_clients, config.clients_per_round, config.get('dropout_rate', 0.0))
  validate_cohort_sampling(config)
  attack = section_fields(config, 'attack')
  fraction = attack.get('fraction', 0.0)
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'config.attack.fraction={fraction} must be in [0, 1).')


def validate_cohort_sampling(config: ConfigDict) -> None:
  """config.sampling and config.sampling_overflow_probability, and Poisson only for server algorithms."""
  how = config.get('sampling', 'fixed_size')
  sampling.validate_cohort_sampling(how, config.get('sampling_overflow_probability',
                                                    sampling.DEFAULT_OVERFLOW_PROBABILITY))
  if how == 'poisson' and config.algorithm.name in DECENTRALIZED:
    raise ValueError(f"config.sampling='poisson' needs a server algorithm; config.algorithm.name="
                     f"{config.algorithm.name!r} is decentralized (every node trains every round): use "
                     "config.sampling='fixed_size'.")


def build_reporters(config: ConfigDict, num_clients: int) -> list[Callable[[int], dict]]:
  """Host-side per-evaluation reporters, `round -> dict of extra metrics` (e.g. DP's epsilon)."""
  privacy = build_privacy(config, num_clients)
  if privacy is None:
    return []
  refuse_unhonoured_sections(config)  # an epsilon only for a run whose algorithm adds the noise
  return [privacy.report]
