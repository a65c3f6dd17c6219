"""A workdir belongs to one config and one process: fingerprint, refusals, --overwrite, rounds, lock."""

import json
import os

import pytest

from fedjax_lab import runner
from fedjax_lab.runner import workdir as workdir_lib
from tests.runner.overrides import tiny_digits_config


def _config(**overrides):
  return tiny_digits_config(**overrides)


def _snapshot(directory):
  """Every file under `directory` with its size, mtime and content hash: what 'nothing written' means."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      if name == workdir_lib.LOCK_FILE:  # the lock holder writes its pid there
        continue
      path = os.path.join(root, name)
      stat = os.stat(path)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns, hash(f.read()))
  return out


def _rows(workdir):
  return [{k: v for k, v in json.loads(line).items() if k != 'seconds'}
          for line in open(os.path.join(workdir, 'metrics.jsonl'))]


def test_config_diff_lists_paths_and_skips_fields_that_do_not_change_results():
  old = workdir_lib.canonical(_config())
  new = workdir_lib.canonical(_config(**{'algorithm.client_lr': 0.5, 'model.hidden': (16,), 'progress': True,
                                         'rounds': 9, 'checkpoint_every': 3}))
  assert workdir_lib.config_diff(old, new) == ['algorithm.client_lr: 0.05 -> 0.5', 'model.hidden: [8] -> [16]']
  assert workdir_lib.fingerprint(_config()) == workdir_lib.fingerprint(_config(rounds=9, progress=True))
  assert workdir_lib.fingerprint(_config()) != workdir_lib.fingerprint(_config(seed=1))


def test_changed_config_is_refused_before_anything_is_written(tmp_path):
  workdir = str(tmp_path / 'run')
  runner.run(_config(), workdir)
  before = _snapshot(workdir)
  with pytest.raises(workdir_lib.WorkdirConfigError) as error:
    runner.run(_config(**{'algorithm.client_lr': 0.5, 'data.num_clients': 16}), workdir)
  message = str(error.value)
  assert 'algorithm.client_lr: 0.05 -> 0.5' in message and 'data.num_clients: 12 -> 16' in message
  assert '--overwrite' in message
  assert _snapshot(workdir) == before
  assert json.load(open(os.path.join(workdir, 'config.json')))['algorithm']['client_lr'] == 0.05


def test_overwrite_starts_afresh_with_the_new_config(tmp_path):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=3), workdir)
  summary = runner.run(_config(**{'algorithm.client_lr': 0.5}), workdir, overwrite=True)
  assert summary['resumed_from_round'] == 0 and summary['final']['round'] == 2
  assert json.load(open(os.path.join(workdir, 'config.json')))['algorithm']['client_lr'] == 0.5
  assert [r['round'] for r in _rows(workdir)] == [0, 1, 2]
  assert workdir_lib.checkpoint_rounds(workdir) == [2]  # round 3's checkpoint of the old run is gone


def test_rounds_extended_continue_lowered_are_refused_equal_is_complete(tmp_path):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=2), workdir)
  extended = runner.run(_config(rounds=4), workdir)
  assert extended['resumed_from_round'] == 2 and extended['final']['round'] == 4
  assert json.load(open(os.path.join(workdir, 'config.json')))['rounds'] == 4
  before = _snapshot(workdir)
  with pytest.raises(workdir_lib.WorkdirConfigError, match=r'config.rounds=3 is below the 4 rounds'):
    runner.run(_config(rounds=3), workdir)
  assert _snapshot(workdir) == before
  again = runner.run(_config(rounds=4, progress=True), workdir)  # progress does not change results
  assert again['already_complete'] and again['final']['round'] == 4
  assert _snapshot(workdir) == before  # summary.json and metrics untouched


def test_checkpoints_without_config_json_are_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  runner.run(_config(), workdir)
  os.remove(os.path.join(workdir, 'config.json'))
  with pytest.raises(workdir_lib.WorkdirConfigError, match='no config.json'):
    runner.run(_config(), workdir)


@pytest.mark.parametrize('every', [0, -2])
def test_checkpoint_every_must_be_a_positive_integer(tmp_path, every):
  with pytest.raises(ValueError, match=r'config.checkpoint_every='):
    runner.run(_config(checkpoint_every=every), str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')  # refused before anything was created


def test_a_held_lock_refuses_a_second_run_naming_workdir_and_pid(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = workdir_lib.Lock(workdir)
  try:
    with pytest.raises(workdir_lib.WorkdirLockedError) as error:
      runner.run(_config(), workdir)
    assert os.path.abspath(workdir) in str(error.value) and f'pid {os.getpid()}' in str(error.value)
    assert not os.path.exists(os.path.join(workdir, 'config.json'))
  finally:
    holder.release()
  assert runner.run(_config(), workdir)['final']['round'] == 2  # released: the next run starts
