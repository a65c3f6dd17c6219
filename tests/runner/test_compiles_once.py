"""A run compiles its round once: no retracing between blocks of equal length, on 1 or several devices,
with clients on the device or on the host."""

import jax
import pytest

from configs import fedavg_mnist1d
from fedjax_lab import runner
from fedjax_lab.runner import builders


def _config(num_devices, data_placement):
  config = fedavg_mnist1d.get_config('smoke')
  config.data.name = 'digits'
  config.data.num_clients = 12
  config.clients_per_round = 4
  config.rounds = 6
  config.eval_every = 2  # three blocks of two rounds
  config.num_devices = num_devices
  config.data_placement = data_placement
  return config


@pytest.mark.parametrize('num_devices, data_placement', [(1, 'device'), (2, 'device'), (2, 'host')])
def test_the_round_is_traced_once(tmp_path, monkeypatch, num_devices, data_placement):
  if jax.device_count() < num_devices:
    pytest.skip(f'needs {num_devices} devices')
  traces = []
  build = builders.build_algorithm

  def counting_build(*args, **kwargs):
    algorithm = build(*args, **kwargs)
    inner = algorithm.step

    def step(state, inputs, rng):
      traces.append(1)  # runs only while tracing
      return inner(state, inputs, rng)

    return algorithm._replace(step=step)

  monkeypatch.setattr(builders, 'build_algorithm', counting_build)
  summary = runner.run(_config(num_devices, data_placement), str(tmp_path))
  assert summary['final']['round'] == 6
  assert len(traces) == 1, f'the round was traced {len(traces)} times'
