"""Lazy cohorts in the runner: the same numbers as gathering the cohort, memory flat in C.

A streaming FedAvg round reads each client's rows from the population by id inside the client loop
(`Algorithm.lazy_inputs`); the eager reference is the same algorithm with `lazy_inputs=False`, so
the runner gathers the [C, M, ...] cohort first, as it did before.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import dp_fedavg_digits
from fedjax_lab import aggregators, engine, runner
from fedjax_lab.algorithms.fedavg import fedavg
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import FederatedData, SplitFederatedData
from fedjax_lab.models import models
from fedjax_lab.runner import builders, train
from tests.runner.test_run import _digits_config


def _run(config, workdir, monkeypatch, lazy: bool):
  """Runs `config`; lazy=False forces the gathered cohort. Returns (lazy_inputs seen, rows, params)."""
  build, seen = builders.build_algorithm, []

  def build_algorithm(*args, **kwargs):
    algorithm = build(*args, **kwargs)
    algorithm = algorithm if lazy else algorithm._replace(lazy_inputs=False)
    seen.append(algorithm.lazy_inputs)
    return algorithm

  with monkeypatch.context() as patch:
    patch.setattr(builders, 'build_algorithm', build_algorithm)
    summary = runner.run(config, str(workdir))
  rows = [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in open(workdir / 'metrics.jsonl')]
  return seen, rows, summary['params']


def _assert_lazy_equals_eager(config, tmp_path, monkeypatch):
  seen_lazy, rows_lazy, params_lazy = _run(config, tmp_path / 'lazy', monkeypatch, lazy=True)
  seen_eager, rows_eager, params_eager = _run(config, tmp_path / 'eager', monkeypatch, lazy=False)
  assert seen_lazy == [True] and seen_eager == [False]
  assert rows_lazy == rows_eager
  jax.tree.map(np.testing.assert_array_equal, params_lazy, params_eager)
  assert rows_lazy[-1]['train_loss'] != rows_lazy[1]['train_loss']  # it trained


@pytest.mark.parametrize('placement, chunk_size, num_devices, clients_per_round', [
    ('scan', 0, 1, 4),
    ('chunked', 3, 1, 5),   # a remainder chunk
    ('scan', 0, 8, 8),
    ('chunked', 2, 4, 6),   # the ids are padded to the device count
])
def test_lazy_cohort_equals_gathered_cohort(tmp_path, monkeypatch, placement, chunk_size, num_devices,
                                            clients_per_round):
  config = _digits_config(rounds=3, eval_every=2, dropout_rate=0.25, placement=placement, chunk_size=chunk_size,
                          num_devices=num_devices, clients_per_round=clients_per_round)
  _assert_lazy_equals_eager(config, tmp_path, monkeypatch)


def test_lazy_cohort_equals_gathered_cohort_with_central_dp(tmp_path, monkeypatch):
  config = dp_fedavg_digits.get_config('smoke')
  config.placement = 'scan'
  _assert_lazy_equals_eager(config, tmp_path, monkeypatch)


def test_runner_gathers_for_algorithms_that_need_the_cohort(tmp_path):
  # A data attack rewrites the gathered cohort, a stacked aggregator needs it whole: both gather,
  # and the runner's lazy/eager choice is the algorithm's.
  attacked = _digits_config(**{'attack.name': 'label_flip', 'attack.fraction': 0.25})
  stacked = _digits_config(**{'aggregator.name': 'median'})
  for config in (attacked, stacked, _digits_config(**{'algorithm.name': 'scaffold'})):
    dataset = builders.build_dataset(config)
    model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
    assert not builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None).lazy_inputs
  config = _digits_config()
  dataset = builders.build_dataset(config)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  assert builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None).lazy_inputs


def _block_temp_bytes(algorithm, model, cohort: int, num_clients: int = 1000, examples: int = 8, features: int = 16):
  """XLA temp bytes of one round exactly as the runner compiles it (sampling and gather included)."""
  spec = jax.ShapeDtypeStruct
  state = jax.eval_shape(algorithm.init, model.init(jax.random.key(0)))
  population = FederatedData(spec((num_clients, examples, features), jnp.float32),
                             spec((num_clients, examples), jnp.int32), spec((num_clients,), jnp.int32))
  key = jax.eval_shape(lambda: jax.random.key(0))
  sampler = engine.cohort_sampler(population, cohort, 0.1, spec((num_clients,), bool),
                                  gather=not algorithm.lazy_inputs)
  compiled = engine.lower_rounds(algorithm, sampler, state, key, 1).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize('placement, chunk_size, aggregator', [
    ('scan', None, 'mean'),
    ('chunked', 5, 'mean'),
    ('scan', None, 'dp_mean'),
])
def test_lazy_round_memory_is_flat_in_the_cohort_and_the_gathered_one_grows(placement, chunk_size, aggregator):
  model = models.mlp((16,), 3, hidden=(64, 64))
  aggregate = (aggregators.mean() if aggregator == 'mean'
               else aggregators.dp_mean(1.0, 1.0, expected_clients_per_round=50))
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 8, aggregator=aggregate, placement=placement,
                     chunk_size=chunk_size)
  assert algorithm.lazy_inputs
  small, large = _block_temp_bytes(algorithm, model, 50), _block_temp_bytes(algorithm, model, 500)
  assert large <= 1.2 * small, (small, large)
  gathered = algorithm._replace(lazy_inputs=False)
  gathered_small, gathered_large = _block_temp_bytes(gathered, model, 50), _block_temp_bytes(gathered, model, 500)
  # The gathered cohort is 500 x 8 x (16 + 1) x 4 bytes = 272 KB at C = 500: it shows.
  assert gathered_large - gathered_small > 200_000, (gathered_small, gathered_large)
  assert gathered_large > 1.5 * large, (large, gathered_large)


def test_population_split_over_devices_equals_a_copy_on_each(tmp_path, monkeypatch):
  # 3 devices do not divide the digits population: it is padded with empty clients, never sampled.
  common = dict(rounds=3, eval_every=1, dropout_rate=0.25, clients_per_round=7, num_devices=3)
  split = runner.run(_digits_config(data_placement='split', **common), str(tmp_path / 'split'))
  whole = runner.run(_digits_config(data_placement='replicated', **common), str(tmp_path / 'whole'))
  assert split['population_split_over_devices'] and not whole['population_split_over_devices']
  rows = lambda name: [{k: v for k, v in json.loads(line).items() if k != 'seconds'}
                       for line in open(tmp_path / name / 'metrics.jsonl')]
  assert rows('split') == rows('whole')
  jax.tree.map(np.testing.assert_array_equal, split['params'], whole['params'])
  # 'device' replicates while D copies fit in REPLICATE_MEMORY_FRACTION of the memory, and splits beyond.
  physical = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  assert 0 < train.usable_memory_bytes() <= physical  # a container's cgroup limit counts when lower
  auto = runner.run(_digits_config(**common), str(tmp_path / 'auto'))
  assert not auto['population_split_over_devices']
  monkeypatch.setattr(train, 'REPLICATE_MEMORY_FRACTION', 0.0)
  auto = runner.run(_digits_config(**common), str(tmp_path / 'auto_small_memory'))
  assert auto['population_split_over_devices']
  stacked = runner.run(_digits_config(**{'aggregator.name': 'median', **common}), str(tmp_path / 'stacked'))
  assert not stacked['population_split_over_devices']  # a gathered cohort reads a whole copy
  with pytest.raises(ValueError, match="data_placement='split' needs an algorithm that reads"):
    runner.run(_digits_config(data_placement='split', **{'aggregator.name': 'median', **common}),
               str(tmp_path / 'refused'))
  assert not (tmp_path / 'refused').exists()


def test_split_population_round_memory_is_flat_in_the_cohort(monkeypatch):
  # Rows are fetched in blocks of D x block rows <= FETCH_BLOCK_BYTES: 4 x 4 rows of 576 bytes here,
  # so both cohorts (10 and 100 clients per device) run past one block.
  monkeypatch.setattr(placement_lib, 'FETCH_BLOCK_BYTES', 4 * 4 * 576)
  mesh = placement_lib.client_mesh(4)
  model = models.mlp((16,), 3, hidden=(64, 64))
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 8, placement='scan', mesh=mesh)
  num_clients = 1002  # not a multiple of 4: padded to 1004
  host = FederatedData(np.zeros((num_clients, 8, 16), np.float32), np.zeros((num_clients, 8), np.int32),
                       np.full((num_clients,), 8, np.int32))
  population = SplitFederatedData(*placement_lib.shard_rows(host, mesh))
  assert population.x.addressable_shards[0].data.shape == (251, 8, 16)
  state = jax.device_put(algorithm.init(model.init(jax.random.key(0))),
                         jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

  def temp_bytes(cohort):
    sampler = engine.cohort_sampler(population, cohort, gather=False, num_clients=num_clients)
    lowered = engine.lower_rounds(algorithm, sampler, state, jax.random.key(1), 1)
    return lowered.compile().memory_analysis().temp_size_in_bytes

  small, large = temp_bytes(40), temp_bytes(400)
  assert large <= 1.2 * small, (small, large)
