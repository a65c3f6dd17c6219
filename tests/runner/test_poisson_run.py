"""config.sampling='poisson' through run(config, workdir): host == device, early errors."""

import jax
import numpy as np
import pytest

from configs import dpsgd_digits
from fedjax_lab import runner
from fedjax_lab.data import sampling
from fedjax_lab.runner import builders
from tests.runner.test_run import _digits_config, _flat, _rows


def test_poisson_host_data_equals_device_data(tmp_path):
  common = dict(rounds=3, eval_every=2, dropout_rate=0.2, clients_per_round=4, sampling='poisson')
  device = runner.run(_digits_config(data_placement='device', **common), str(tmp_path / 'device'))
  hosted = runner.run(_digits_config(data_placement='host', **common), str(tmp_path / 'host'))
  assert device['cohort_size'] == hosted['cohort_size'] == sampling.cohort_capacity(12, 4, 'poisson')
  assert device['sampling'] == 'poisson'
  np.testing.assert_allclose(_flat(hosted['params']), _flat(device['params']), rtol=1e-5, atol=1e-6)
  rows_device, rows_host = _rows(tmp_path / 'device'), _rows(tmp_path / 'host')
  for a, b in zip(rows_device, rows_host):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-6)
  # `participants` is the realised number of members (a round's mean), not the array length.
  assert 0 < rows_device[1]['participants'] < device['cohort_size']


def _no_dataset(*args, **kwargs):
  raise AssertionError('the config should have been refused before loading data or compiling')


@pytest.mark.parametrize('overrides, match', [
    ({'sampling': 'uniform'}, 'config.sampling='),
    ({'sampling': 'poisson', 'sampling_overflow_probability': 0.0}, 'config.sampling_overflow_probability'),
    ({'sampling': 'poisson', 'sampling_overflow_probability': 1.5}, 'config.sampling_overflow_probability'),
])
def test_bad_sampling_fields_raise_before_anything_runs(tmp_path, monkeypatch, overrides, match):
  monkeypatch.setattr(builders, 'build_dataset', _no_dataset)
  with pytest.raises(ValueError, match=match):
    runner.run(_digits_config(**overrides), str(tmp_path))


def test_poisson_is_refused_for_decentralized_algorithms(tmp_path, monkeypatch):
  monkeypatch.setattr(builders, 'build_dataset', _no_dataset)
  config = dpsgd_digits.get_config('smoke')
  config.sampling = 'poisson'
  with pytest.raises(ValueError, match="config.sampling='poisson'.*decentralized"):
    runner.run(config, str(tmp_path))
