"""run(config, workdir) end to end: outputs, resume, divergence, early errors, MNIST-1D accuracy."""

import json
import os

import jax
import numpy as np
import pytest

from configs import fedavg_mnist1d
from configs import femnist_synthetic_host
from fedjax_lab import runner
from fedjax_lab.data import datasets, host
from tests.runner.overrides import tiny_digits_config


def _digits_config(**overrides):
  return tiny_digits_config(**{'model.hidden': (16,), **overrides})


def _flat(params):
  return np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)])


def test_smoke_run_writes_outputs(tmp_path):
  summary = runner.run(_digits_config(), str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [r['round'] for r in rows] == [0, 1, 2]
  assert {'train_loss', 'test_loss', 'test_accuracy', 'bytes_up_total'} <= set(rows[-1])
  assert os.path.exists(tmp_path / 'config.json') and os.path.exists(tmp_path / 'summary.json')
  assert os.path.exists(tmp_path / 'metrics.csv')
  assert summary['final']['round'] == 2


def test_resume_equals_uninterrupted(tmp_path):
  full = runner.run(_digits_config(rounds=6, eval_every=2, checkpoint_every=2), str(tmp_path / 'full'))
  # A run that stopped after round 4 (its last checkpoint), restarted with the same workdir.
  runner.run(_digits_config(rounds=4, eval_every=2, checkpoint_every=2), str(tmp_path / 'resumed'))
  resumed = runner.run(_digits_config(rounds=6, eval_every=2, checkpoint_every=2), str(tmp_path / 'resumed'))
  assert resumed['resumed_from_round'] == 4
  np.testing.assert_array_equal(_flat(full['params']), _flat(resumed['params']))
  rows_full = [json.loads(l) for l in open(tmp_path / 'full' / 'metrics.jsonl')]
  rows_resumed = [json.loads(l) for l in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  strip = lambda rows: [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]
  assert strip(rows_full) == strip(rows_resumed)


def _rows(path):
  return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in open(path / 'metrics.jsonl')]


@pytest.mark.parametrize('num_devices', [1, 4])
def test_host_data_equals_device_data(tmp_path, num_devices):
  # With dropout every cohort field matters; on 4 devices the host cohort is split over the mesh.
  common = dict(rounds=3, eval_every=2, dropout_rate=0.25, num_devices=num_devices, clients_per_round=4)
  device = runner.run(_digits_config(data_placement='device', **common), str(tmp_path / 'device'))
  hosted = runner.run(_digits_config(data_placement='host', **common), str(tmp_path / 'host'))
  assert hosted['data_placement'] == 'host' and device['data_placement'] == 'device'
  np.testing.assert_allclose(_flat(hosted['params']), _flat(device['params']), rtol=1e-5, atol=1e-6)
  rows_device, rows_host = _rows(tmp_path / 'device'), _rows(tmp_path / 'host')
  assert [r['round'] for r in rows_host] == [0, 2, 3]
  for a, b in zip(rows_device, rows_host):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-6)
  assert rows_host[-1]['train_loss'] != rows_host[1]['train_loss']  # it trained


def test_host_data_from_a_memmapped_folder_without_prefetch(tmp_path):
  host.save_dataset(datasets.digits(num_clients=12, partition='iid', seed=0), str(tmp_path / 'data'))
  config = _digits_config(rounds=3, data_placement='host', prefetch_depth=0)
  config.data = {'name': 'federated_npy', 'data_dir': str(tmp_path / 'data')}
  from_folder = runner.run(config, str(tmp_path / 'folder'))
  in_memory = runner.run(_digits_config(rounds=3), str(tmp_path / 'memory'))
  np.testing.assert_allclose(_flat(from_folder['params']), _flat(in_memory['params']), rtol=1e-5, atol=1e-6)


def test_host_data_resume_equals_uninterrupted(tmp_path):
  kwargs = dict(rounds=4, eval_every=2, checkpoint_every=2, data_placement='host')
  full = runner.run(_digits_config(**kwargs), str(tmp_path / 'full'))
  runner.run(_digits_config(**{**kwargs, 'rounds': 2}), str(tmp_path / 'resumed'))
  resumed = runner.run(_digits_config(**kwargs), str(tmp_path / 'resumed'))
  assert resumed['resumed_from_round'] == 2
  np.testing.assert_array_equal(_flat(full['params']), _flat(resumed['params']))
  assert _rows(tmp_path / 'full') == _rows(tmp_path / 'resumed')


def test_femnist_synthetic_host_smoke(tmp_path):
  config = femnist_synthetic_host.get_config('smoke')
  config.data.cache_dir = str(tmp_path / 'cache')
  summary = runner.run(config, str(tmp_path / 'run'))
  assert summary['data_placement'] == 'host' and summary['final']['round'] == 2
  assert np.isfinite(summary['final']['test_loss']) and np.isfinite(summary['final']['train_loss'])
  assert [r['round'] for r in _rows(tmp_path / 'run')] == [0, 1, 2]


def test_missing_data_folder_fails_early_with_the_field(tmp_path):
  config = _digits_config(data_placement='host')
  config.data = {'name': 'federated_npy', 'data_dir': str(tmp_path / 'missing')}
  with pytest.raises(FileNotFoundError, match=r'config\.data\.data_dir.*save_dataset'):
    runner.run(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


@pytest.mark.parametrize('data_placement', ['device', 'host'])
def test_divergence_names_round_and_metric(tmp_path, data_placement):
  config = _digits_config(rounds=6, data_placement=data_placement)
  config.algorithm.client_lr = 1e8
  with pytest.raises(runner.RunDivergedError, match=r'round \d+: (train|test)_loss'):
    runner.run(config, str(tmp_path))


@pytest.mark.parametrize('override, message', [
    ({'clients_per_round': 50}, 'clients_per_round=50 exceeds num_clients=12'),
    ({'algorithm.batch_size': 0}, 'batch_size'),
    ({'model.name': 'resnet'}, 'config.model.name'),
    ({'algorithm.name': 'fedfoo'}, 'config.algorithm.name'),
    ({'placement': 'pmap'}, 'config.placement'),
    ({'rounds': 0}, 'config.rounds'),
    ({'dropout_rate': 1.0}, 'dropout_rate'),
    ({'data_placement': 'gpu'}, r"config.data_placement='gpu'.*'device', 'replicated', 'split', 'host'"),
    ({'prefetch_depth': -1}, 'config.prefetch_depth'),
])
def test_bad_config_fails_early_with_the_field(tmp_path, override, message):
  config = _digits_config()
  key, value = next(iter(override.items()))
  config = _digits_config(**{key: value})
  with pytest.raises(ValueError, match=message):
    runner.run(config, str(tmp_path))


@pytest.mark.slow
def test_fedavg_mnist1d_iid_reaches_60_percent_and_dirichlet_is_worse(tmp_path):
  def config(partition, alpha=None):
    c = fedavg_mnist1d.get_config()
    c.progress = False
    c.rounds = 80
    c.eval_every = 80
    c.data.num_clients = 40
    c.clients_per_round = 20
    c.dropout_rate = 0.0
    c.data.partition = partition
    if alpha is not None:
      c.data.alpha = alpha
    c.algorithm.local_epochs = 5
    c.algorithm.client_lr = 0.2
    c.algorithm.batch_size = 32
    return c
  iid = runner.run(config('iid'), str(tmp_path / 'iid'))['final']['test_accuracy']
  skewed = runner.run(config('dirichlet', 0.1), str(tmp_path / 'dir'))['final']['test_accuracy']
  assert iid >= 0.60, iid
  assert skewed < iid - 0.03, (iid, skewed)
