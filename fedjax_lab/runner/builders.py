"""From a config to the pieces of a run: small explicit registries of name -> builder.

Every builder validates its config fields and raises ValueError naming the field before anything
is compiled. The config layout (see configs/fedavg_mnist1d.py for a complete example):

  config.seed, config.rounds, config.clients_per_round, config.dropout_rate, config.placement,
  config.chunk_size, config.memory_budget_mb, config.num_devices
  config.sampling ('fixed_size' | 'poisson'), config.sampling_overflow_probability: how cohorts are
    drawn (fedjax_lab/data/sampling.py); 'poisson' has each client join with probability
    clients_per_round / num_clients, in an array of `cohort_size` slots; config.dp.sampling must match
  config.deadline, config.seconds_per_example, config.speed_sigma: optional round deadline; clients whose
    simulated time (examples x epochs x seconds_per_example x log-normal speed) exceeds it drop out
    placement='chunked' with chunk_size=0 and memory_budget_mb=N picks the largest chunk whose
    compiled round needs at most N MiB of XLA temporary memory (`choose_chunk_size`).
  config.data_placement ('device' | 'host'), config.prefetch_depth: where the training clients live
    (see fedjax_lab/runner/train.py and fedjax_lab/data/host.py)
  config.data:       name + keyword arguments of `fedjax_lab.data.datasets.load_dataset`
  config.model:      name (+ hidden, ... keyword arguments of the model builder)
  config.algorithm:  name, client_lr, server_optimizer, server_lr, local_epochs, batch_size, ...
                     (decentralized names: learning_rate, batch_size, order, local_steps)
  config.aggregator: name (+ its arguments)
  config.attack, config.compression, config.dp: optional sections, name='none' switches them off
  config.topology:   decentralized algorithms only: name, weights, gossip, ... (one node per client;
                     configs/dpsgd_digits.py)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import ml_collections
import optax

from fedjax_lab import aggregators as aggregators_lib
from fedjax_lab import transforms as transforms_lib
from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.models import models as models_lib
from fedjax_lab.runner import simulated

ConfigDict = ml_collections.ConfigDict


def _section(config: ConfigDict, name: str) -> ConfigDict:
  return config.get(name) or ConfigDict({'name': 'none'})


def _kwargs(section: ConfigDict, exclude=('name',)) -> dict[str, Any]:
  return {k: v for k, v in section.to_dict().items() if k not in exclude}


# ---------------------------------------------------------------------------------------------
# Data and model.


def build_dataset(config: ConfigDict):
  """Loads `config.data.name` with the section's other fields as keyword arguments."""
  from fedjax_lab.data import datasets  # imported lazily: it pulls in scikit-learn and mnist1d.
  kwargs = _kwargs(config.data)
  kwargs.setdefault('seed', config.seed)
  if config.data.name in simulated.DATASETS:  # studies: the conditioned least-squares problem
    return simulated.DATASETS[config.data.name](**kwargs)
  return datasets.load_dataset(config.data.name, **kwargs)


def build_model(config: ConfigDict, input_shape, num_classes: int) -> models_lib.Model:
  section = config.model
  kwargs = _kwargs(section)
  if 'hidden' in kwargs:
    kwargs['hidden'] = tuple(kwargs['hidden'])
  if 'features' in kwargs:
    kwargs['features'] = tuple(kwargs['features'])
  return models_lib.get_model(section.name, tuple(input_shape), num_classes, **kwargs)


# ---------------------------------------------------------------------------------------------
# Server optimizers (FedOpt, Reddi et al. 2021).

SERVER_OPTIMIZERS: dict[str, Callable[[ConfigDict], optax.GradientTransformation]] = {
    'sgd': lambda a: optax.sgd(a.server_lr),
    'momentum': lambda a: optax.sgd(a.server_lr, momentum=a.get('server_momentum', 0.9)),
    'adam': lambda a: optax.adam(a.server_lr, b1=a.get('server_b1', 0.9), b2=a.get('server_b2', 0.99),
                                 eps=a.get('server_eps', 1e-3)),
    'yogi': lambda a: optax.yogi(a.server_lr, b1=a.get('server_b1', 0.9), b2=a.get('server_b2', 0.99),
                                 eps=a.get('server_eps', 1e-3)),
    'adagrad': lambda a: optax.adagrad(a.server_lr, eps=a.get('server_eps', 1e-3)),
}

CLIENT_OPTIMIZERS: dict[str, Callable[[ConfigDict], optax.GradientTransformation]] = {
    'sgd': lambda a: optax.sgd(a.client_lr, momentum=a.get('client_momentum') or None),
    'adam': lambda a: optax.adam(a.client_lr),
}


def build_server_optimizer(section: ConfigDict) -> optax.GradientTransformation:
  name = section.get('server_optimizer', 'sgd')
  if name not in SERVER_OPTIMIZERS:
    raise ValueError(f'Unknown config.algorithm.server_optimizer={name!r}; choose one of {sorted(SERVER_OPTIMIZERS)}.')
  if section.get('server_lr', 1.0) <= 0:
    raise ValueError(f'config.algorithm.server_lr={section.server_lr} must be > 0.')
  return SERVER_OPTIMIZERS[name](section)


def build_client_optimizer(section: ConfigDict) -> optax.GradientTransformation:
  name = section.get('client_optimizer', 'sgd')
  if name not in CLIENT_OPTIMIZERS:
    raise ValueError(f'Unknown config.algorithm.client_optimizer={name!r}; choose one of {sorted(CLIENT_OPTIMIZERS)}.')
  if section.client_lr <= 0:
    raise ValueError(f'config.algorithm.client_lr={section.client_lr} must be > 0.')
  return CLIENT_OPTIMIZERS[name](section)


def client_lr_schedule(section: ConfigDict) -> Callable | None:
  """`round -> scale` from config.algorithm.client_lr_decay ('none', 'inverse', 'inverse_sqrt', 'step')."""
  kind = section.get('client_lr_decay', 'none')
  rate = section.get('client_lr_decay_rate', 0.0)
  if kind == 'none':
    return None
  if rate < 0:
    raise ValueError(f'config.algorithm.client_lr_decay_rate={rate} must be >= 0.')
  if kind == 'inverse':  # eta_r = eta / (1 + rate * r), the O(1/r) decay of Li et al. (2020)
    return lambda r: 1.0 / (1.0 + rate * r)
  if kind == 'inverse_sqrt':
    return lambda r: 1.0 / (1.0 + rate * r) ** 0.5
  if kind == 'step':  # halve every `client_lr_decay_every` rounds
    every = section.get('client_lr_decay_every', 100)
    return lambda r: 0.5 ** (r // every)
  raise ValueError(f'Unknown config.algorithm.client_lr_decay={kind!r}; '
                   "choose 'none', 'inverse', 'inverse_sqrt' or 'step'.")


# ---------------------------------------------------------------------------------------------
# Aggregators, transforms and attacks. Implementations live in their packages; the names here
# are what configs use.


def _aggregator_registry() -> dict[str, Callable[..., aggregators_lib.Aggregator]]:
  registry = {'mean': lambda **kw: aggregators_lib.mean()}
  registry.update(getattr(aggregators_lib, 'AGGREGATORS', {}))
  return registry


def build_aggregator(config: ConfigDict, clients_per_round: int, num_clients: int | None = None
                     ) -> aggregators_lib.Aggregator:
  dp = _section(config, 'dp')
  if dp.get('name', 'none') == 'central':
    # DP-FedAvg replaces the aggregator: clip, sum, Gaussian noise, divide by the cohort size.
    from fedjax_lab.privacy import dp as dp_lib
    if _section(config, 'aggregator').get('name', 'mean') not in ('mean', 'none'):
      raise ValueError('config.dp.name="central" replaces the aggregator; set config.aggregator.name="mean".')
    return dp_lib.build_central_dp(dp, clients_per_round, num_clients, rounds=config.rounds,
                                   engine_sampling=config.get('sampling', 'fixed_size'))
  section = _section(config, 'aggregator')
  name = section.get('name', 'mean')
  if name in ('none', None):
    name = 'mean'
  registry = _aggregator_registry()
  if name not in registry:
    raise ValueError(f'Unknown config.aggregator.name={name!r}; choose one of {sorted(registry)}.')
  kwargs = _kwargs(section)
  return registry[name](num_clients=clients_per_round, **kwargs)


def build_transform(config: ConfigDict, num_params: int, num_clients: int):
  """Chains the configured update transforms: update attack, compression, local DP noise.

  Returns None when nothing is configured, which lets a mean aggregator stream.
  """
  parts = []
  attack = _section(config, 'attack')
  if attack.get('name', 'none') != 'none':
    from fedjax_lab import attacks
    update_attack = attacks.build_update_attack(attack, clients_per_round=config.clients_per_round)
    if update_attack is not None:
      parts.append(update_attack)
  compression = _section(config, 'compression')
  if compression.get('name', 'none') != 'none':
    from fedjax_lab.transforms import compression as compression_lib
    parts.append(compression_lib.build(compression, num_params=num_params, num_clients=num_clients))
  preagg = _section(config, 'preaggregation')
  if preagg.get('name', 'none') != 'none':
    from fedjax_lab.transforms import preaggregation
    parts.append(preaggregation.build(preagg, clients_per_round=config.clients_per_round))
  dp = _section(config, 'dp')
  if dp.get('name', 'none') == 'local':
    from fedjax_lab.privacy import dp as dp_lib
    parts.append(dp_lib.build_local_dp(dp))
  if not parts:
    return None
  return parts[0] if len(parts) == 1 else transforms_lib.chain(*parts)


def build_data_attack(config: ConfigDict, num_classes: int):
  attack = _section(config, 'attack')
  if attack.get('name', 'none') == 'none':
    return None
  from fedjax_lab import attacks
  return attacks.build_data_attack(attack, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------
# Algorithms.

FEDAVG_FAMILY = ('fedavg', 'fedprox', 'fedsgd', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad')
_FEDOPT_SERVER = {'fedavgm': 'momentum', 'fedadam': 'adam', 'fedyogi': 'yogi', 'fedadagrad': 'adagrad'}
# Decentralized (no server): every client is a node of config.topology, all of them train every round.
DECENTRALIZED = ('dpsgd', 'local_sgd_gossip', 'gradient_tracking', 'exact_diffusion')
# Simulated systems studies: data-parallel GD and the asynchronous server (fedjax_lab/runner/simulated.py).
ALGORITHMS = FEDAVG_FAMILY + ('scaffold',) + DECENTRALIZED + simulated.ALGORITHMS


def build_decentralized(config: ConfigDict, model: models_lib.Model, num_clients: int, mesh) -> Algorithm:
  """A gossip algorithm over config.topology, one node per client (see algorithms/decentralized.py).

  The runner's cohort is then every client in order, every round: clients_per_round must equal the
  number of clients and nobody drops out (a node that skips a round would need a time-varying W).
  """
  from fedjax_lab.algorithms import decentralized
  if config.clients_per_round != num_clients:
    raise ValueError(f'config.clients_per_round={config.clients_per_round} must equal the number of clients '
                     f'({num_clients}) for config.algorithm.name={config.algorithm.name!r}: every node trains '
                     'every round.')
  if config.get('dropout_rate', 0.0) != 0.0:
    raise ValueError(f'config.dropout_rate={config.dropout_rate} must be 0 for decentralized training.')
  for section in ('attack', 'compression', 'dp'):
    if _section(config, section).get('name', 'none') != 'none':
      raise ValueError(f'config.{section}.name={_section(config, section).name!r} is not supported by the '
                       f'decentralized algorithms; set it to "none".')
  topology = _section(config, 'topology')
  if topology.get('name', 'none') == 'none':
    raise ValueError('config.topology.name is required for decentralized training (e.g. "ring", "torus", '
                     '"exponential"; see fedjax_lab.topology.GRAPHS).')
  topology = topology.to_dict()
  topology.setdefault('num_nodes', num_clients)
  if topology['num_nodes'] != num_clients:
    raise ValueError(f'config.topology.num_nodes={topology["num_nodes"]} must equal the number of clients '
                     f'({num_clients}).')
  algorithm = {k: v for k, v in config.algorithm.to_dict().items() if k in _DECENTRALIZED_FIELDS}
  return decentralized.from_config(algorithm, topology, model, mesh)


_DECENTRALIZED_FIELDS = ('name', 'learning_rate', 'batch_size', 'order', 'local_steps')


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


def _build_algorithm(config: ConfigDict, model: models_lib.Model, train_data, num_classes: int, mesh,
                     chunk_size: int | None) -> Algorithm:
  section = config.algorithm
  name = section.name
  if name not in ALGORITHMS:
    raise ValueError(f'Unknown config.algorithm.name={name!r}; choose one of {sorted(ALGORITHMS)}.')
  if name in _FEDOPT_SERVER and section.get('server_optimizer', 'sgd') == 'sgd':
    section = ConfigDict(section.to_dict())
    section.server_optimizer = _FEDOPT_SERVER[name]
  if name in DECENTRALIZED:
    return build_decentralized(config, model, train_data.num_clients, mesh)
  server_optimizer = build_server_optimizer(section)
  max_examples = train_data.max_examples
  common = dict(placement=config.get('placement', 'auto'), chunk_size=chunk_size, mesh=mesh)
  num_params = models_lib.num_params(model.init(jax.random.key(0)))
  if name == 'scaffold':
    return scaffold(model, section.client_lr, server_optimizer, section.local_epochs, section.batch_size,
                    max_examples, train_data.num_clients, **common)
  aggregator = build_aggregator(config, config.clients_per_round, train_data.num_clients)
  transform = build_transform(config, num_params, train_data.num_clients)
  data_attack = build_data_attack(config, num_classes)
  if name == 'fedsgd':
    return fedsgd(model, server_optimizer, max_examples, aggregator=aggregator, transform=transform,
                  data_attack=data_attack, **common)
  prox_mu = section.get('prox_mu', 0.0)
  if name == 'fedprox' and prox_mu <= 0:
    raise ValueError(f'config.algorithm.prox_mu={prox_mu} must be > 0 for FedProx.')
  return fedavg(model, build_client_optimizer(section), server_optimizer, section.local_epochs,
                section.batch_size, max_examples, aggregator=aggregator, transform=transform,
                data_attack=data_attack, prox_mu=prox_mu, client_lr_schedule=client_lr_schedule(section),
                name=name, **common)


def validate_run_config(config: ConfigDict, num_clients: int) -> None:
  """Cheap checks of the run-level fields (the builders check their own sections)."""
  if config.rounds < 1:
    raise ValueError(f'config.rounds={config.rounds} must be >= 1.')
  if config.get('eval_every', 1) < 1:
    raise ValueError(f'config.eval_every={config.eval_every} must be >= 1.')
  sampling.validate_sampling(num_clients, config.clients_per_round, config.get('dropout_rate', 0.0))
  validate_cohort_sampling(config)
  attack = _section(config, 'attack')
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
  reporters = []
  dp = _section(config, 'dp')
  if dp.get('name', 'none') != 'none':
    from fedjax_lab.privacy import dp as dp_lib
    reporters.append(dp_lib.epsilon_reporter(dp, clients_per_round=config.clients_per_round,
                                             num_clients=num_clients, rounds=config.rounds,
                                             engine_sampling=config.get('sampling', 'fixed_size')))
  return reporters
