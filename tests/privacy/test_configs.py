"""Smoke tests: the privacy configs run through the runner (DP-FedAvg runs, the DP sweep, the inversion tasks)."""

import json
import os

import pytest

from configs import dlg_digits, dp_digits, dp_fedavg_digits
from fedjax_lab.runner import run


def test_dp_fedavg_config_runs_two_rounds_and_reports_epsilon(tmp_path):
  config = dp_fedavg_digits.get_config('smoke')
  run(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert [r['round'] for r in rows] == [0, 1, 2]
  assert rows[0]['epsilon'] == 0.0
  assert 0 < rows[1]['epsilon'] < rows[2]['epsilon'] <= config.dp.target_epsilon * (1 + 1e-9)
  assert rows[2]['epsilon'] == pytest.approx(config.dp.target_epsilon, rel=1e-2)  # calibrated for 2 rounds


def test_configs_have_their_variants():
  for module in (dlg_digits, dp_digits):
    module.get_config('')
    module.get_config('small')
    module.get_config('smoke')
    with pytest.raises(ValueError, match='Unknown config argument'):
      module.get_config('nope')
  for variant in ('local', 'poisson', 'poisson_smoke'):
    dp_fedavg_digits.get_config(variant)
  with pytest.raises(ValueError, match='Unknown config argument'):
    dp_fedavg_digits.get_config('nope')


@pytest.mark.slow
def test_dp_sweep_and_its_figure(tmp_path):
  from experiments.figures import _studies, dp_accuracy_vs_epsilon
  run(dp_digits.get_config('small'), str(tmp_path))
  rows = dp_accuracy_vs_epsilon.load(str(tmp_path))['rows']
  assert [r['target_epsilon'] for r in rows] == [8.0]
  assert rows[0]['epsilon'] == pytest.approx(8.0, rel=1e-2) and rows[0]['epsilon'] <= 8.0
  dp_accuracy_vs_epsilon.main(['--workdir', str(tmp_path), '--outdir', str(tmp_path)])
  assert os.path.getsize(tmp_path / 'dp_accuracy_vs_epsilon.png') > 0
  del _studies


@pytest.mark.slow
def test_progress_task_and_its_figure(tmp_path):
  from experiments.figures import dlg_progress
  config = dlg_digits.get_config('small')
  config.sweep = config.sweep[:1]  # the progress analysis
  run(config, str(tmp_path))
  with open(tmp_path / 'progress' / 'result.json') as f:
    rows = json.load(f)['rows']
  assert [r['name'][:4] for r in rows] == ['iDLG', 'DLG,']
  assert rows[0]['label_accuracy'] == 1.0
  dlg_progress.main(['--workdir', str(tmp_path), '--outdir', str(tmp_path)])
  assert os.path.getsize(tmp_path / 'dlg_progress.pdf') > 0


def test_poisson_dp_fedavg_reports_the_poisson_epsilon(tmp_path):
  from fedjax_lab.privacy import accounting
  config = dp_fedavg_digits.get_config('poisson_smoke')
  summary = run(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert summary['sampling'] == 'poisson' and summary['cohort_size'] > config.clients_per_round
  sigma, n, m = rows[-1]['noise_multiplier'], config.data.num_clients, config.clients_per_round
  for row in rows[1:]:
    t = row['round']
    assert row['epsilon'] == pytest.approx(
        accounting.compute_epsilon(sigma, n, m, t, config.dp.delta, 'poisson', 'rdp'), rel=1e-9)
    assert row['epsilon_pld'] == pytest.approx(
        accounting.compute_epsilon(sigma, n, m, t, config.dp.delta, 'poisson', 'pld'), rel=1e-9)
    assert row['epsilon_pld'] < row['epsilon']
    assert 0 < row['participants'] <= summary['cohort_size']
  assert rows[-1]['epsilon'] == pytest.approx(config.dp.target_epsilon, rel=1e-2)  # calibrated for Poisson


def test_dp_sampling_must_match_the_run_sampling(tmp_path):
  config = dp_fedavg_digits.get_config('poisson_smoke')
  config.dp.sampling = 'fixed_size'
  with pytest.raises(ValueError, match="config.dp.sampling='fixed_size'.*config.sampling='poisson'"):
    run(config, str(tmp_path))
