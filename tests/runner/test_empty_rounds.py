"""Rounds in which no client reports are honest: NaN train loss, skipped in averages, counted, refused."""

import json
import logging
import math
import os

import numpy as np
import pytest

from fedjax_lab import runner
from fedjax_lab.runner import train
from tests.runner.overrides import tiny_digits_config


def _config(**overrides):
  return tiny_digits_config(**overrides)


def _rows(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]


def test_block_row_averages_train_metrics_over_rounds_with_participants():
  totals = {}
  row = train.block_row({'train_loss': np.array([1.0, np.nan, 3.0]), 'participants': np.array([2, 0, 4]),
                         'bytes_up': np.array([2.0, 0.0, 4.0]), 'update_norm': np.array([0.5, 0.0, 0.5])}, totals)
  assert row['train_loss'] == 2.0 and row['participants'] == 2.0 and row['empty_rounds'] == 1
  assert row['bytes_up_total'] == 6.0 and totals == {'bytes_up': 6.0, 'empty_rounds': 1}
  empty = train.block_row({'train_loss': np.array([np.nan, np.nan]), 'participants': np.array([0, 0])}, totals)
  assert 'train_loss' not in empty and empty['participants'] == 0.0 and empty['empty_rounds_total'] == 3


@pytest.mark.parametrize('algorithm', ['fedavg', 'scaffold'])
def test_a_run_where_nobody_reports_is_refused_not_reported_as_trained(tmp_path, algorithm):
  config = _config(rounds=12, eval_every=4, dropout_rate=0.999, **{'algorithm.name': algorithm})
  with pytest.raises(train.NoParticipantsError, match=r'No client reported in any of the 12 rounds.*dropout_rate'):
    runner.run(config, str(tmp_path))
  rows = _rows(tmp_path)
  assert [r['round'] for r in rows] == [0, 4, 8, 12]
  for row in rows[1:]:
    assert 'train_loss' not in row  # never 0.0
    assert row['participants'] == 0.0 and row['empty_rounds'] == 4
  assert not os.path.exists(tmp_path / 'summary.json')


def test_a_short_empty_run_is_refused_at_its_end(tmp_path):
  with pytest.raises(train.NoParticipantsError, match='any of the 2 rounds'):
    runner.run(_config(dropout_rate=0.999), str(tmp_path))


def test_some_empty_rounds_are_skipped_counted_and_warned_about(tmp_path, caplog):
  # One client per round, dropping out half the time: many rounds have nobody, none is divergence.
  config = _config(rounds=16, eval_every=4, clients_per_round=1, dropout_rate=0.5, max_empty_round_fraction=0.2)
  with caplog.at_level(logging.WARNING):
    summary = runner.run(config, str(tmp_path))
  rows = _rows(tmp_path)[1:]
  assert summary['empty_rounds'] == rows[-1]['empty_rounds_total'] == sum(r['empty_rounds'] for r in rows)
  assert 0 < summary['empty_rounds'] < 16
  for row in rows:
    assert row['participants'] == pytest.approx(1 - row['empty_rounds'] / 4)
    if row['empty_rounds'] < 4:
      assert math.isfinite(row['train_loss']) and row['train_loss'] > 0
    else:
      assert 'train_loss' not in row
  assert summary['empty_rounds'] / 16 > 0.2  # seed 0 draws about half the rounds empty
  assert any('config.max_empty_round_fraction=0.2' in r.getMessage() for r in caplog.records)


def test_max_empty_round_fraction_is_validated(tmp_path):
  with pytest.raises(ValueError, match=r'config.max_empty_round_fraction=1.5'):
    runner.run(_config(max_empty_round_fraction=1.5), str(tmp_path / 'run'))
