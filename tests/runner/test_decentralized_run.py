"""Decentralized algorithms through run(config, workdir): same iterates as stepping the algorithm by
hand, node-average and per-node evaluation, resume, and early errors."""

import json

import jax
import numpy as np
import pytest

from configs import dpsgd_digits
from fedjax_lab import engine, runner
from fedjax_lab.runner import builders
from tests.runner.overrides import with_overrides


def _config(**overrides):
  config = dpsgd_digits.get_config('smoke')
  return with_overrides(config, **overrides)


def _flat(params):
  return np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)])


def _by_hand(config):
  """The same run, stepped in Python with the runner's key derivation and every node in order."""
  dataset = builders.build_dataset(config)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  algorithm = builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None)
  init_key, base_key = jax.random.split(jax.random.key(config.seed))
  state = algorithm.init(model.init(init_key))
  data = jax.tree.map(jax.numpy.asarray, dataset.train)
  step = jax.jit(algorithm.step)
  for r in range(config.rounds):
    _, step_key = jax.random.split(jax.random.fold_in(base_key, r))
    state, _ = step(state, engine.every_client_inputs(data), step_key)
  return state


@pytest.mark.parametrize('name', ['dpsgd', 'gradient_tracking'])
def test_runner_equals_stepping_by_hand(tmp_path, name):
  overrides = {'algorithm.name': name}
  config = _config(**overrides)
  if name == 'gradient_tracking':
    del config.algorithm.order
  summary = runner.run(config, str(tmp_path))
  expected = _by_hand(config)
  assert jax.tree.leaves(summary['params'])[0].shape[0] == config.data.num_clients  # one model per node
  np.testing.assert_allclose(_flat(summary['params']), _flat(expected.params), rtol=1e-5, atol=1e-6)
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [r['round'] for r in rows] == [0, 2, 4]
  last = rows[-1]
  for key in ('test_accuracy', 'test_node_accuracy_mean', 'test_node_accuracy_worst', 'consensus_error'):
    assert key in last, key
  assert last['test_node_accuracy_worst'] <= last['test_node_accuracy_mean'] + 1e-6
  assert rows[0]['test_node_accuracy_mean'] == pytest.approx(rows[0]['test_accuracy'])  # equal starts


def test_node_average_is_what_test_accuracy_measures(tmp_path):
  config = _config()
  summary = runner.run(config, str(tmp_path))
  dataset = builders.build_dataset(config)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  average = jax.tree.map(lambda p: p.mean(axis=0), summary['params'])
  expected = runner.train.evaluate_batched(model, average, dataset.test_x, dataset.test_y)
  assert summary['final']['test_accuracy'] == pytest.approx(float(expected['accuracy']), abs=1e-6)


def test_decentralized_resume_equals_uninterrupted(tmp_path):
  full = runner.run(_config(rounds=6), str(tmp_path / 'full'))
  runner.run(_config(rounds=4), str(tmp_path / 'resumed'))
  resumed = runner.run(_config(rounds=6), str(tmp_path / 'resumed'))
  assert resumed['resumed_from_round'] == 4
  np.testing.assert_array_equal(_flat(full['params']), _flat(resumed['params']))


@pytest.mark.parametrize('override, message', [
    ({'clients_per_round': 4}, r'clients_per_round=4 must equal the number of clients \(8\)'),
    ({'dropout_rate': 0.1}, r'dropout_rate=0.1 must be 0'),
    ({'topology.name': 'none'}, r'config.topology.name is required'),
    ({'topology.num_nodes': 6}, r'config.topology.num_nodes=6 must equal the number of clients \(8\)'),
    ({'topology.name': 'disconnected'}, r'disconnected'),
    ({'algorithm.name': 'dpsgdd'}, r"Unknown config.algorithm.name='dpsgdd'"),
    ({'deadline': 1.0}, r'config.deadline applies to cohorts of a server'),
])
def test_bad_decentralized_config_fails_early(tmp_path, override, message):
  with pytest.raises(ValueError, match=message):
    runner.run(_config(**override), str(tmp_path))
  assert not (tmp_path / 'metrics.jsonl').exists()
