"""Two processes on localhost (jax.distributed, gloo) give the same run as one process."""

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ['--config=configs/fedavg_mnist1d.py:smoke', '--config.data.name=digits', '--config.data.num_clients=12',
         '--config.placement=scan']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ)
  # One CPU device per process (FACTS.md: several devices per process can deadlock collectives).
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1 --xla_cpu_collective_timeout_seconds=60'
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _command(workdir, *extra):
  return [sys.executable, '-m', 'experiments.run', f'--workdir={workdir}', *FLAGS, *extra]


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in f]


@pytest.mark.multiprocess
def test_two_processes_equal_one(tmp_path):
  port = _free_port()
  shared = tmp_path / 'two'
  procs = [subprocess.Popen(_command(shared, '--config.num_devices=2', f'--coordinator_address=127.0.0.1:{port}',
                                     '--num_processes=2', f'--process_id={i}'),
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:  # hung collectives ignore SIGTERM: kill hard
      if p.poll() is None:
        p.kill()
  assert all(p.returncode == 0 for p in procs), logs[0][-3000:] + logs[1][-3000:]
  single = tmp_path / 'one'
  subprocess.run(_command(single, '--config.num_devices=1'), cwd=ROOT, env=_env(), check=True, timeout=240,
                 capture_output=True)
  two, one = _rows(shared), _rows(single)
  assert [r['round'] for r in two] == [0, 1, 2]
  for a, b in zip(two, one):
    assert a.keys() == b.keys()
    for key in a:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
