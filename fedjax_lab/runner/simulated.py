"""Simulated-systems paradigms for the runner: data-parallel GD and the asynchronous parameter server.

  config.algorithm.name   what runs                                       one round is
  'data_parallel_gd'      `algorithms.data_parallel.data_parallel_gd`    one synchronous iteration
  'async_sgd'             `algorithms.async_ps.async_server`             one arriving gradient
  'damped_async_sgd'      (lr c(tau), config.algorithm.damping)
  'stale_synchronous'     (SSP, config.algorithm.staleness_bound)
  'fedbuff'               (config.algorithm.buffer_size, damping 'sqrt')

Worker i is client i of the data (config.data.num_clients workers); the loss is the model's
(`functools.partial(models.batch_loss, model)`: the 'least_squares' or 'regression' data with the
'linear_regression' model give least squares). config.algorithm.learning_rate is the step size;
config.algorithm.zero_init starts from w = 0.

The cluster is simulated from config.stragglers (`fedjax_lab.systems`): worker compute times are
seconds_per_gradient x slowdowns drawn from the straggler model (distribution, factor, num_slow,
probability, scale; seed = config.seed), one push or pull takes message_seconds, a synchronous
iteration's reduce takes sync_seconds. Both kinds of algorithm consume inputs='arrivals' (a schedule
drawn before the run): the asynchronous server's arrival u, or the data-parallel barrier r with the
simulated time it ends. Every round reports 'sim_time' (seconds of the simulated cluster at the end of
the round), which the runner writes at each evaluation as the block's last value (LAST_VALUE_METRICS).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_lab import engine
from fedjax_lab.algorithms import async_ps
from fedjax_lab.algorithms import data_parallel
from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.models import models as models_lib
from fedjax_lab.systems import cost_model
from fedjax_lab.systems import stragglers as stragglers_lib

ASYNC = ('async_sgd', 'damped_async_sgd', 'stale_synchronous', 'fedbuff')
ALGORITHMS = ('data_parallel_gd',) + ASYNC
# Metrics the runner records as the block's last value, not its mean (a clock, a counter).
LAST_VALUE_METRICS = ('sim_time', 'server_version')

# ---------------------------------------------------------------------------------------------
# Data: the conditioned least-squares problem of the sync/async studies.


def least_squares(num_clients: int = 16, num_examples: int = 4096, dim: int = 32, noise: float = 0.5,
                  condition_number: float = 10.0, seed: int = 0, replicated: bool = False):
  """`data_parallel.least_squares_problem` split over num_clients workers (contiguous shards or replicas).

  Returns:
    FederatedDataset: train x [m, ceil(n / m), d] (or [m, n, d] replicated), the whole problem as the
    test set, num_classes 1; extras w_star [d], hessian [d, d] (X^T X / n), loss_star, lipschitz.
  """
  from fedjax_lab.data.datasets import FederatedDataset
  problem = data_parallel.least_squares_problem(int(num_examples), int(dim), noise, int(seed), condition_number)
  split = data_parallel.replicate_data if replicated else data_parallel.shard_data
  train = split(problem.x, problem.y, int(num_clients))
  x64 = np.asarray(problem.x, np.float64)
  extras = {'w_star': np.asarray(problem.w_star, np.float32), 'hessian': (x64.T @ x64 / x64.shape[0]).astype(np.float32),
            'loss_star': problem.loss_star, 'lipschitz': problem.lipschitz}
  return FederatedDataset(FederatedData(*(np.asarray(a) for a in train)), problem.x, problem.y, (int(dim),), 1,
                          'least_squares', extras)


DATASETS: dict[str, Callable] = {'least_squares': least_squares}

# ---------------------------------------------------------------------------------------------
# The simulated cluster.


def straggler_model(config: ml_collections.ConfigDict) -> stragglers_lib.StragglerModel:
  section = config.get('stragglers') or ml_collections.ConfigDict()
  model = stragglers_lib.StragglerModel(section.get('distribution', 'none'), float(section.get('factor', 1.0)),
                                        int(section.get('num_slow', 0)), float(section.get('probability', 0.0)),
                                        float(section.get('scale', 0.0)))
  try:
    stragglers_lib.validate_stragglers(model)
  except ValueError as error:
    raise ValueError(f'config.{error}') from None
  return model


def compute_seconds(config: ml_collections.ConfigDict, num_rows: int, num_workers: int) -> np.ndarray:
  """[num_rows, m] simulated compute seconds of each worker's successive gradients."""
  section = config.get('stragglers') or ml_collections.ConfigDict()
  return async_ps.draw_compute_seconds(num_rows, num_workers, float(section.get('seconds_per_gradient', 1.0)),
                                       straggler_model(config), int(config.seed))


def _stragglers_field(config, name: str, default: float) -> float:
  value = float((config.get('stragglers') or ml_collections.ConfigDict()).get(name, default))
  if not (math.isfinite(value) and value >= 0):
    raise ValueError(f'config.stragglers.{name}={value} must be finite and >= 0.')
  return value


# ---------------------------------------------------------------------------------------------
# Algorithms.

# The schedule each built algorithm replays, keyed by its step function (make_sampler reads it).
_SCHEDULES: dict[Callable, Callable[[FederatedData], engine.Sampler]] = {}


def _check_sections(config: ml_collections.ConfigDict) -> None:
  name = config.algorithm.name
  for section in ('attack', 'compression', 'dp', 'preaggregation', 'topology'):
    value = (config.get(section) or ml_collections.ConfigDict({'name': 'none'})).get('name', 'none')
    if value != 'none':
      raise ValueError(f'config.{section}.name={value!r} does not apply to config.algorithm.name={name!r} '
                       '(a simulated cluster of workers); set it to "none".')
  aggregator = (config.get('aggregator') or ml_collections.ConfigDict({'name': 'mean'})).get('name', 'mean')
  if aggregator not in ('mean', 'none'):
    raise ValueError(f'config.aggregator.name={aggregator!r} does not apply to {name!r} (gradients are averaged or '
                     'applied as they arrive); set it to "mean".')
  if config.get('dropout_rate', 0.0) or config.get('deadline', float('inf')) != float('inf'):
    raise ValueError(f'config.dropout_rate and config.deadline do not apply to {name!r}; the straggler model '
                     '(config.stragglers) decides who is slow.')
  if config.get('sampling', 'fixed_size') != 'fixed_size':
    raise ValueError(f"config.sampling={config.sampling!r} does not apply to {name!r}: use 'fixed_size'.")


def _zero_init(algorithm: Algorithm) -> Algorithm:
  return algorithm._replace(init=lambda params: algorithm.init(jax.tree.map(jnp.zeros_like, params)))


def build_algorithm(config: ml_collections.ConfigDict, model: models_lib.Model, train: FederatedData,
                    mesh=None) -> Algorithm:
  """The data-parallel or asynchronous algorithm of config.algorithm, with its schedule registered."""
  _check_sections(config)
  section = config.algorithm
  name = section.name
  if 'learning_rate' not in section:
    raise ValueError(f'config.algorithm.learning_rate is required for {name!r}.')
  num_workers = int(train.num_examples.shape[0])
  if config.clients_per_round != num_workers:
    raise ValueError(f'config.clients_per_round={config.clients_per_round} must equal the number of workers '
                     f'(config.data.num_clients={num_workers}) for {name!r}: every worker computes.')
  loss_fn = functools.partial(models_lib.batch_loss, model)
  rounds = int(config.rounds)
  message = _stragglers_field(config, 'message_seconds', 0.0)
  if name == 'data_parallel_gd':
    base = data_parallel.data_parallel_gd(loss_fn, float(section.learning_rate), config.get('placement', 'auto'),
                                          config.get('chunk_size') or None, mesh)
    compute = compute_seconds(config, rounds, num_workers)
    ends = cost_model.sync_timeline(compute, _stragglers_field(config, 'sync_seconds', 0.0)).end
    algorithm = _timed(base)
    _SCHEDULES[algorithm.step] = lambda data: engine.Sampler(_sample_barrier, (FederatedData(*data),
                                                                                 jnp.asarray(ends, jnp.float32)))
  else:
    async_config = _async_config(section, num_workers)
    compute = compute_seconds(config, rounds, num_workers)
    schedule = async_ps.async_schedule(compute, rounds, message, async_config.staleness_bound,
                                       async_config.buffer_size)
    algorithm = async_ps.async_server(loss_fn, async_ps.ring_size(schedule))
    algorithm = algorithm._replace(step=_fresh(algorithm.step), name=name)
    _SCHEDULES[algorithm.step] = lambda data: async_ps.arrival_sampler(data, async_config, schedule)
  if section.get('zero_init', False):
    algorithm = _zero_init(algorithm)
  return algorithm


def _fresh(step):
  # async_server is cached per (loss, ring size); a new function object keys this run's schedule.
  return lambda state, inputs, rng: step(state, inputs, rng)


def _async_config(section, num_workers: int) -> async_ps.AsyncConfig:
  lr = float(section.learning_rate)
  name = section.name
  try:
    if name == 'async_sgd':
      return async_ps.async_sgd(num_workers, lr)
    if name == 'damped_async_sgd':
      return async_ps.damped_async_sgd(num_workers, lr, section.get('damping', 'inverse'))
    if name == 'stale_synchronous':
      if 'staleness_bound' not in section:
        raise ValueError('staleness_bound is required for stale_synchronous (SSP bound s >= 0).')
      return async_ps.stale_synchronous(num_workers, lr, int(section.staleness_bound))
    return async_ps.fedbuff(num_workers, lr, int(section.get('buffer_size', 1)), section.get('damping', 'sqrt'))
  except ValueError as error:
    raise ValueError(f'config.algorithm.{error}') from None


def _timed(algorithm: Algorithm) -> Algorithm:
  """Data-parallel GD whose inputs carry the barrier's end time; reports it as 'sim_time'."""

  def step(state, inputs: sampling.RoundInputs, rng):
    state, metrics = algorithm.step(state, inputs._replace(arrival=None), rng)
    return state, {**metrics, 'sim_time': inputs.arrival}

  return algorithm._replace(step=step, inputs='arrivals')


def _sample_barrier(data, round_index, key):
  del key
  workers, ends = data
  return engine.every_client_inputs(workers)._replace(arrival=ends[round_index])


def arrival_sampler(algorithm: Algorithm, train: FederatedData) -> engine.Sampler:
  """The schedule `build_algorithm` drew for `algorithm`, over the device-resident workers' data."""
  if algorithm.step not in _SCHEDULES:
    raise ValueError(f'Algorithm {algorithm.name!r} consumes arrivals but was not built by '
                     'fedjax_lab.runner.simulated.build_algorithm, which draws its schedule.')
  return _SCHEDULES[algorithm.step](train)

