"""End-to-end acceptance of the robustness work on scikit-learn digits (FedAvg, MLP (32,), 20
clients, 30 rounds), through the runner: each grid cell of configs/robust_grid.py is one run
(`cell_overrides` on the grid's base config).

Measured numbers (and the full grid) are in docs/notes/robustness.md.
"""

import ml_collections
import pytest

from configs import robust_grid
from fedjax_lab.runner import run
from fedjax_lab.runner import sweep as sweep_lib

pytestmark = pytest.mark.slow


def _grid():
  config = robust_grid.get_config()
  config.eval_every = config.rounds  # one block per run
  config.sweep = ()
  return config


def _cell(grid, partition, attack, defence, fraction):
  return sweep_lib.apply_overrides(grid, robust_grid.cell_overrides(grid.study, partition, attack, defence, fraction))


def _final(grid, partition, attack, defence, fractions, tmp_path):
  out = {}
  for fraction in fractions:
    folder = tmp_path / robust_grid.cell_name(partition, attack, defence, fraction, 0)
    out[fraction] = run(_cell(grid, partition, attack, defence, fraction), str(folder))['final']
  return out


def test_iid_sign_flip_breaks_the_mean_but_not_robust_aggregators(tmp_path):
  grid = _grid()
  mean = _final(grid, 'iid', 'sign_flip', 'mean', (0.0, 0.2), tmp_path)
  clean = mean[0.0]['test_accuracy']
  assert clean > 0.8
  assert mean[0.2]['test_accuracy'] < 0.2  # near chance (10 classes)
  for defence in ('median', 'trimmed_mean', 'krum'):
    attacked = _final(grid, 'iid', 'sign_flip', defence, (0.2,), tmp_path)[0.2]['test_accuracy']
    assert attacked > clean - 0.05, (defence, attacked, clean)


def test_robust_aggregators_cost_accuracy_on_dirichlet_0_1_without_attack(tmp_path):
  grid = _grid()
  mean = _final(grid, 'dirichlet_0_1', 'sign_flip', 'mean', (0.0,), tmp_path)[0.0]['test_accuracy']
  krum = _final(grid, 'dirichlet_0_1', 'sign_flip', 'krum', (0.0,), tmp_path)[0.0]['test_accuracy']
  assert mean > 0.75
  assert krum < mean - 0.15, (krum, mean)


def test_boosted_backdoor_beats_the_mean_and_norm_bounding_stops_it(tmp_path):
  grid = _grid()
  mean = _final(grid, 'iid', 'backdoor_boosted', 'mean', (0.05,), tmp_path)[0.05]
  bounded = _final(grid, 'iid', 'backdoor_boosted', 'norm_bounded_mean', (0.05,), tmp_path)[0.05]
  assert mean['backdoor_success'] > 0.8 and mean['test_accuracy'] > 0.75  # stealthy
  assert bounded['backdoor_success'] < 0.3
  assert bounded['test_accuracy'] > 0.75


def test_bad_inputs_give_clear_errors(tmp_path):
  grid = _grid()
  with pytest.raises(ValueError, match="Unknown config.study.attacks entry 'sign_flop'"):
    robust_grid.cell_overrides(grid.study, 'iid', 'sign_flop', 'median', 0.2)
  config = _cell(grid, 'iid', 'sign_flip', 'median', 0.2)
  config.attack = ml_collections.ConfigDict({'name': 'sign_flop', 'fraction': 0.1})
  with pytest.raises(ValueError, match='sign_flop'):
    run(config, str(tmp_path / 'a'))
  grid.study.defences.krum.f = 10
  with pytest.raises(ValueError, match=r'krum: f=10 .*n > 2f \+ 2'):
    run(_cell(grid, 'iid', 'sign_flip', 'krum', 0.1), str(tmp_path / 'b'))
