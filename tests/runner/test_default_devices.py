"""The default device count follows the CPU affinity, a user's choice wins, and the numbers do not move.

A run on every core (one CPU device per usable core, the cohort spread over them) sums each
device's share and then the shares, so it equals the one-device run up to float32 summation order:
measured at a max relative parameter difference of ~5e-7 after 100 rounds of the main job; the
tests allow 1e-5 on the reported metrics.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

from fedjax_lab.clients import placement
from fedjax_lab.runtime import devices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
PROBE = ('from fedjax_lab.runtime import devices; devices.use_all_cores(); import jax; '
         'from fedjax_lab.clients import placement; print(jax.device_count(), placement.default_num_devices())')
RUN_FLAGS = ['--config=configs/fedavg_mnist1d.py:smoke', '--config.data.name=digits', '--config.data.num_clients=12',
             '--config.rounds=3', '--config.placement=scan']
TOLERANCE = 1e-5

needs_taskset = pytest.mark.skipif(shutil.which('taskset') is None or not CORES,
                                   reason='needs taskset and os.sched_getaffinity (Linux)')


def _env(**extra):
  """The test environment without the suite's forced device count (conftest sets 8), plus `extra`."""
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  env['JAX_PLATFORMS'] = 'cpu'
  env.update(extra)
  return env


def _probe(cores, env):
  """(device count, default_num_devices) of a fresh process pinned to `cores`."""
  command = [sys.executable, '-c', PROBE]
  if cores is not None:
    command = ['taskset', '-c', ','.join(map(str, cores))] + command
  out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
  count, default = out.stdout.split()[-2:]
  return int(count), int(default)


@needs_taskset
def test_one_core_gives_one_device():
  assert _probe(CORES[:1], _env()) == (1, 1)


@needs_taskset
def test_two_cores_give_two_devices():
  if len(CORES) < 2:
    pytest.skip('this process may use only one core')
  assert _probe(CORES[:2], _env()) == (2, 2)


@needs_taskset
def test_the_users_device_count_wins():
  # Three forced devices on one core: the count is the user's, the default mesh still one per core.
  forced = _env(XLA_FLAGS='--xla_force_host_platform_device_count=3')
  assert _probe(CORES[:1], forced) == (3, 1)
  assert _probe(CORES[:1], _env(JAX_NUM_CPU_DEVICES='3')) == (3, 1)


def test_default_mesh_spans_the_usable_cores():
  # The suite forces a device count (conftest): use_all_cores leaves it alone.
  assert devices.use_all_cores() == devices.user_cpu_device_count() == jax.device_count()
  expected = min(jax.device_count(), placement.usable_cores())
  assert placement.default_num_devices() == expected
  assert placement.num_mesh_clients(placement.client_mesh(0)) == expected
  assert placement.num_mesh_clients(placement.client_mesh(3)) == 3


@pytest.mark.parametrize('bad', [-1, 1.5, True])
def test_bad_num_devices_names_the_field(bad):
  with pytest.raises(ValueError, match='config.num_devices'):
    placement.client_mesh(bad)


def _run(workdir, cores):
  command = [sys.executable, '-m', 'experiments.run', f'--workdir={workdir}', *RUN_FLAGS]
  if cores is not None:
    command = ['taskset', '-c', ','.join(map(str, cores))] + command
  subprocess.run(command, cwd=ROOT, env=_env(), check=True, timeout=600, capture_output=True)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return summary, rows


@needs_taskset
@pytest.mark.slow
def test_default_run_equals_the_one_core_run(tmp_path):
  if len(CORES) < 2:
    pytest.skip('this process may use only one core: the default run is the one-core run')
  every_core, every_rows = _run(tmp_path / 'every_core', None)
  one_core, one_rows = _run(tmp_path / 'one_core', CORES[:1])
  assert one_core['num_devices'] == 1
  assert every_core['num_devices'] == len(CORES)
  assert len(every_rows) == len(one_rows)
  for every, one in zip(every_rows, one_rows):
    for key in ('train_loss', 'test_loss', 'test_accuracy'):
      if key in one:
        assert every[key] == pytest.approx(one[key], rel=TOLERANCE, abs=1e-7), (key, every['round'])
