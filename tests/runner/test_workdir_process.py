"""The workdir as a user meets it: `python -m experiments.run` processes, locks, signals, kills, damage."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from configs import fedavg_mnist1d
from fedjax_lab import runner
from tests.runner.overrides import with_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUNDS = 200
FLAGS = (f'--config.rounds={ROUNDS}', '--config.eval_every=10', '--config.checkpoint_every=10')

pytestmark = pytest.mark.slow


def _start(workdir, *flags, log=None):
  command = [sys.executable, '-m', 'experiments.run', '--config=configs/fedavg_mnist1d.py:smoke',
             f'--workdir={workdir}', *flags]
  log = open(log or f'{workdir}.log', 'w')
  return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)


def _run(workdir, *flags, log=None):
  log = log or f'{workdir}.{time.time_ns()}.log'
  process = _start(workdir, *flags, log=log)
  process.wait(240)
  return process.returncode, open(log).read()


def _rows(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  rows = []
  for line in open(path):
    try:
      rows.append({k: v for k, v in json.loads(line).items() if k != 'seconds'})
    except ValueError:
      pass  # a row being appended
  return rows


def _wait_for_round(workdir, round_index, process, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    rows = _rows(workdir)
    if rows and rows[-1]['round'] >= round_index:
      return rows[-1]['round']
    assert process.poll() is None, f'the run ended (status {process.returncode}) before round {round_index}'
    time.sleep(0.05)
  raise TimeoutError(f'no row of round >= {round_index} in {workdir} after {timeout} s')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The metrics rows of an uninterrupted run of the same config (in this process)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  config = with_overrides(fedavg_mnist1d.get_config('smoke'), rounds=ROUNDS, eval_every=10, checkpoint_every=10)
  runner.run(config, workdir)
  return _rows(workdir)


def test_a_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
  workdir = str(tmp_path / 'run')
  first = _start(workdir, '--config.rounds=1000000', '--config.eval_every=50', '--config.checkpoint_every=1000000')
  try:
    _wait_for_round(workdir, 50, first)
    status, output = _run(workdir, '--config.rounds=1000000', '--config.eval_every=50')
    assert status != 0
    assert f'{os.path.abspath(workdir)} is in use by another run (pid {first.pid}' in output
    assert 'Traceback' not in output
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  rows_before = len(_rows(workdir))
  assert rows_before >= 2  # the second process wrote nothing into the first's metrics
  status, output = _run(workdir, '--config.rounds=2', '--config.eval_every=50')
  assert status == 0, output
  assert [r['round'] for r in _rows(workdir)] == [0, 2]


def test_sigterm_checkpoints_exits_143_and_a_rerun_resumes_to_the_uninterrupted_metrics(tmp_path, reference):
  workdir = str(tmp_path / 'run')
  process = _start(workdir, *FLAGS[:2], '--config.checkpoint_every=1000')  # only the stop and the end save
  try:
    _wait_for_round(workdir, 20, process)
    process.send_signal(signal.SIGTERM)
    process.wait(120)
  finally:
    if process.poll() is None:
      process.kill()
  output = open(f'{workdir}.log').read()
  assert process.returncode == 128 + signal.SIGTERM, output
  stopped = [int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit()]
  assert len(stopped) == 1 and 20 <= stopped[0] < ROUNDS
  assert f'Stopped at round {stopped[0]} of {ROUNDS}' in output
  status, output = _run(workdir, *FLAGS[:2], '--config.checkpoint_every=1000')
  assert status == 0, output
  assert json.load(open(os.path.join(workdir, 'summary.json')))['resumed_from_round'] == stopped[0]
  assert _rows(workdir) == reference


def test_kill_at_a_random_round_and_a_corrupt_newest_checkpoint_still_end_as_uninterrupted(tmp_path, reference):
  kill_round = random.Random().randrange(30, ROUNDS // 2)
  workdir = str(tmp_path / 'run')
  process = _start(workdir, *FLAGS)
  try:
    reached = _wait_for_round(workdir, kill_round, process)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  checkpoints = os.path.join(workdir, 'checkpoints')
  newest = max(int(n) for n in os.listdir(checkpoints) if n.isdigit())
  data = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(checkpoints, str(newest), 'state'))
          for f in names if f'{os.sep}d{os.sep}' in os.path.join(root, f)]
  biggest = max(data, key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 2)
  status, output = _run(workdir, *FLAGS)
  assert status == 0, f'killed at round {reached}:\n{output}'
  assert f'checkpoints/{newest} does not restore' in output
  assert _rows(workdir) == reference, f'killed at round {reached}, newest checkpoint {newest} truncated'


def test_changed_config_is_refused_with_the_fields_and_overwrite_starts_afresh(tmp_path):
  workdir = str(tmp_path / 'run')
  status, output = _run(workdir)
  assert status == 0, output
  config_json = open(os.path.join(workdir, 'config.json')).read()
  status, output = _run(workdir, '--config.algorithm.client_lr=0.5')
  assert status == 1 and 'algorithm.client_lr: 0.05 -> 0.5' in output and 'Traceback' not in output
  assert open(os.path.join(workdir, 'config.json')).read() == config_json
  status, output = _run(workdir, '--config.rounds=1')
  assert status == 1 and 'config.rounds=1 is below the 2 rounds' in output
  status, output = _run(workdir)
  assert status == 0 and 'already holds the finished 2-round run' in output and 'Finished' not in output
  status, output = _run(workdir, '--config.algorithm.client_lr=0.5', '--overwrite')
  assert status == 0, output
  assert json.load(open(os.path.join(workdir, 'config.json')))['algorithm']['client_lr'] == 0.5
