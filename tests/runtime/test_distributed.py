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
  # One CPU device per process: several CPU devices per process can deadlock repeated collectives.
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1 --xla_cpu_collective_timeout_seconds=60'
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _command(workdir, *extra):
  return [sys.executable, '-m', 'experiments.run', f'--workdir={workdir}', *FLAGS, *extra]


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in f]


def _run_two(workdir, extra_for, env_for):
  procs = [subprocess.Popen(_command(workdir, '--config.num_devices=2', *extra_for(i)), cwd=ROOT, env=env_for(i),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:  # hung collectives ignore SIGTERM: kill hard
      if p.poll() is None:
        p.kill()
  assert all(p.returncode == 0 for p in procs), logs[0][-3000:] + logs[1][-3000:]


def _slurm_env(process_id: int, port: int):
  """What `srun --ntasks=2` on one node would set (jax's SlurmCluster reads these)."""
  env = _env()
  # jax derives the coordinator port from the job id: 61440 + job_id % 4096.
  env.update({'SLURM_JOB_ID': str(port - 61440), 'SLURM_STEP_NODELIST': '127.0.0.1', 'SLURM_NTASKS': '2',
              'SLURM_PROCID': str(process_id), 'SLURM_LOCALID': str(process_id), 'SLURM_STEP_NUM_NODES': '1'})
  return env


def _free_slurm_port() -> int:
  """A free port in the range jax derives from SLURM_JOB_ID (above the usual ephemeral range)."""
  for port in range(61440 + os.getpid() % 2048, 65536):
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
        return port
      except OSError:
        continue
  pytest.skip('no free port in 61440..65535')


def _assert_same_rows(two, one):
  assert [r['round'] for r in two] == [0, 1, 2]
  assert len(two) == len(one)
  for a, b in zip(two, one):
    assert a.keys() == b.keys()
    for key in a:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


@pytest.mark.multiprocess
def test_two_processes_equal_one(tmp_path):
  port = _free_port()
  _run_two(tmp_path / 'two', lambda i: [f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                                        f'--process_id={i}'], lambda i: _env())
  slurm_port = _free_slurm_port()
  # The Slurm-style pair also keeps its clients on the host (every process loads them, transfers cohorts).
  _run_two(tmp_path / 'slurm', lambda i: ['--distributed_auto', '--config.data_placement=host'],
           lambda i: _slurm_env(i, slurm_port))
  single = tmp_path / 'one'
  subprocess.run(_command(single, '--config.num_devices=1'), cwd=ROOT, env=_env(), check=True, timeout=240,
                 capture_output=True)
  one = _rows(single)
  _assert_same_rows(_rows(tmp_path / 'two'), one)
  _assert_same_rows(_rows(tmp_path / 'slurm'), one)


def test_distributed_auto_outside_a_cluster_says_what_to_do():
  env = _env()
  for key in list(env):
    if key.startswith(('SLURM_', 'OMPI_', 'PMI_', 'TPU_')):
      env.pop(key)
  out = subprocess.run([sys.executable, '-c', 'from fedjax_lab.runtime import distributed; '
                        'distributed.initialize_from_environment()'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert '--distributed_auto found no cluster' in out.stderr and '--coordinator_address' in out.stderr
