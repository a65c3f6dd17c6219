"""config.deadline through run(config, workdir): stragglers drop out, inf changes nothing, host == device."""

import json

import numpy as np
import pytest

from configs import fedavg_mnist1d
from fedjax_lab import runner


def _config(**fields):
  config = fedavg_mnist1d.get_config('smoke')
  config.data.name = 'digits'
  config.data.num_clients = 12
  config.data.partition = 'quantity_skew'  # unbalanced sizes, so the deadline bites the large clients
  config.clients_per_round = 6
  config.dropout_rate = 0.0
  config.rounds = 4
  config.eval_every = 2
  config.model.hidden = (16,)
  for key, value in fields.items():
    config[key] = value
  return config


def _rows(path):
  return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in open(path / 'metrics.jsonl')]


def test_infinite_deadline_changes_nothing(tmp_path):
  runner.run(_config(), str(tmp_path / 'none'))
  runner.run(_config(deadline=float('inf')), str(tmp_path / 'inf'))
  assert _rows(tmp_path / 'none') == _rows(tmp_path / 'inf')


def test_deadline_drops_stragglers_and_host_equals_device(tmp_path):
  # seconds_per_example=1e-3 and ~60-120 examples per client: 0.08 s drops a good part of each cohort.
  fields = dict(deadline=0.08, speed_sigma=0.5, seconds_per_example=1e-3)
  runner.run(_config(), str(tmp_path / 'none'))
  runner.run(_config(**fields), str(tmp_path / 'device'))
  runner.run(_config(data_placement='host', **fields), str(tmp_path / 'host'))
  free, device, host = _rows(tmp_path / 'none'), _rows(tmp_path / 'device'), _rows(tmp_path / 'host')
  assert all(r['participants'] == 6 for r in free[1:])
  assert all(0 < r['participants'] < 6 for r in device[1:]), [r['participants'] for r in device]
  assert device[-1]['train_loss'] != free[-1]['train_loss']
  for a, b in zip(device, host):
    assert a.keys() == b.keys()
    for key in a:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize('fields, message', [
    ({'deadline': 0.0}, r'config.deadline=0.0 must be > 0'),
    ({'deadline': 1.0, 'seconds_per_example': -1.0}, r'config.seconds_per_example=-1.0 must be > 0'),
    ({'deadline': 1.0, 'speed_sigma': -0.1}, r'config.speed_sigma=-0.1 must be >= 0'),
])
def test_bad_deadline_fails_early(tmp_path, fields, message):
  with pytest.raises(ValueError, match=message):
    runner.run(_config(**fields), str(tmp_path))
  assert not (tmp_path / 'metrics.jsonl').exists()
