"""Resume tolerates damage: bad checkpoints are skipped, metrics trimmed atomically, counters kept, stops."""

import json
import logging
import os
import threading

import jax
import numpy as np
import pytest

from fedjax_lab import runner
from fedjax_lab.runner import train
from fedjax_lab.runner.checkpoint import NoRestorableCheckpointError
from fedjax_lab.runner.metrics_io import MetricsWriter
from tests.runner.overrides import tiny_digits_config

ROUNDS = 6


def _config(**overrides):
  return tiny_digits_config(**{'checkpoint_every': 1, **overrides})


def _rows(workdir):
  return [{k: v for k, v in json.loads(line).items() if k != 'seconds'}
          for line in open(os.path.join(workdir, 'metrics.jsonl'))]


def _flat(params):
  return np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)])


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run of ROUNDS rounds: (metrics rows, params)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  summary = runner.run(_config(rounds=ROUNDS), workdir)
  return _rows(workdir), _flat(summary['params'])


def _damage(checkpoint_dir, how):
  if how == 'truncated_data':  # the array data files cut in half (a kill or a full disk mid-write)
    files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(checkpoint_dir, 'state'))
             for f in names if os.sep + 'd' + os.sep in os.path.join(root, f)]
    assert files
    for path in files:
      os.truncate(path, os.path.getsize(path) // 2)
  elif how == 'empty_metadata':
    open(os.path.join(checkpoint_dir, 'state', '_METADATA'), 'w').close()
  elif how == 'corrupt_totals':
    open(os.path.join(checkpoint_dir, 'totals', 'metadata'), 'w').write('{"bytes_up": 1.0, "bytes_')
  else:
    raise ValueError(how)


@pytest.mark.parametrize('how', ['truncated_data', 'empty_metadata', 'corrupt_totals'])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_as_uninterrupted(tmp_path, reference, how, caplog):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=4), workdir)  # checkpoints of rounds 3 and 4 (max_to_keep=2)
  _damage(os.path.join(workdir, 'checkpoints', '4'), how)
  with caplog.at_level(logging.WARNING):
    summary = runner.run(_config(rounds=ROUNDS), workdir)
  assert summary['resumed_from_round'] == 3
  assert any(os.path.join(workdir, 'checkpoints', '4') in r.getMessage() and 'does not restore' in r.getMessage()
             for r in caplog.records)
  assert os.listdir(os.path.join(workdir, 'checkpoints.damaged'))  # set aside, not deleted
  rows, params = reference
  assert _rows(workdir) == rows
  np.testing.assert_array_equal(_flat(summary['params']), params)


def test_no_restorable_checkpoint_is_an_error_naming_them(tmp_path):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=2), workdir)
  for name in ('1', '2'):
    _damage(os.path.join(workdir, 'checkpoints', name), 'empty_metadata')
  with pytest.raises(NoRestorableCheckpointError, match='No checkpoint in .* restores'):
    runner.run(_config(rounds=ROUNDS), workdir)


def test_a_damaged_last_metrics_line_is_dropped_with_a_warning(tmp_path, reference, caplog):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=4), workdir)
  path = os.path.join(workdir, 'metrics.jsonl')
  os.truncate(path, os.path.getsize(path) - 40)  # a kill in the middle of appending round 4's row
  with caplog.at_level(logging.WARNING):
    runner.run(_config(rounds=ROUNDS), workdir)
  assert any('Dropping damaged line 5' in r.getMessage() and path in r.getMessage() for r in caplog.records)
  assert _rows(workdir) == reference[0]


def test_a_deleted_metrics_file_keeps_the_cumulative_counters(tmp_path, reference):
  workdir = str(tmp_path / 'run')
  runner.run(_config(rounds=4), workdir)
  os.remove(os.path.join(workdir, 'metrics.jsonl'))
  os.remove(os.path.join(workdir, 'metrics.csv'))
  runner.run(_config(rounds=ROUNDS), workdir)
  rows = _rows(workdir)
  assert [r['round'] for r in rows] == [5, 6]
  for key in ('bytes_up_total', 'bytes_down_total', 'empty_rounds_total'):
    assert rows[-1][key] == reference[0][-1][key] and rows[-1][key] is not None
  assert rows[-1]['bytes_up_total'] > 0


def test_metrics_are_trimmed_by_writing_a_new_file(tmp_path):
  workdir = str(tmp_path)
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    for r in range(4):
      f.write(json.dumps({'round': r, 'train_loss': 1.0}) + '\n')
  inode = os.stat(tmp_path / 'metrics.jsonl').st_ino
  writer = MetricsWriter(workdir, resume_round=2)
  assert [r['round'] for r in writer.rows] == [0, 1, 2]
  # os.replace of a new file, never an in-place rewrite: a kill leaves the old file or the new one.
  assert os.stat(tmp_path / 'metrics.jsonl').st_ino != inode
  assert [json.loads(l)['round'] for l in open(tmp_path / 'metrics.jsonl')] == [0, 1, 2]
  assert not [n for n in os.listdir(tmp_path) if '.tmp-' in n]


class _StopAfter(threading.Event):
  """An event that reads as set from its n-th check on (a signal arriving during round n's block)."""

  def __init__(self, checks):
    super().__init__()
    self.checks = checks

  def is_set(self):
    self.checks -= 1
    return self.checks < 0 or super().is_set()


def test_a_requested_stop_checkpoints_the_round_reached_and_resumes(tmp_path, reference):
  workdir = str(tmp_path / 'run')
  config = _config(rounds=ROUNDS, checkpoint_every=100)  # only the stop and the end save
  with pytest.raises(train.RunInterrupted, match='Stopped at round 3 of 6') as stopped:
    runner.run(config, workdir, stop=_StopAfter(3))
  assert stopped.value.round_index == 3
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3']
  summary = runner.run(config, workdir)
  assert summary['resumed_from_round'] == 3
  assert _rows(workdir) == reference[0]
  np.testing.assert_array_equal(_flat(summary['params']), reference[1])
