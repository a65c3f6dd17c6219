"""End-to-end acceptance of the robustness work on scikit-learn digits (FedAvg, MLP (32,), 20
clients, 30 rounds), with the grid's own code path (configs/robust_grid.py, experiments/
robustness_grid.py). Each cell compiles once and reuses that program for every Byzantine fraction.

Measured numbers (and the full grid) are in docs/notes/robustness.md.
"""

import ml_collections
import pytest

from configs import robust_grid
from experiments import robustness_grid

pytestmark = pytest.mark.slow


def _grid():
  grid = robust_grid.get_config()
  grid.base.eval_every = grid.base.rounds  # one block, one compiled program per cell
  return grid


def _final(grid, partition, attack, defence, fractions):
  config = robustness_grid.cell_config(grid, partition, attack, defence)
  return {run['fraction']: run for run in robustness_grid.run_cell(config, fractions)}


def test_iid_sign_flip_breaks_the_mean_but_not_robust_aggregators():
  grid = _grid()
  mean = _final(grid, 'iid', 'sign_flip', 'mean', (0.0, 0.2))
  clean = mean[0.0]['final_accuracy']
  assert clean > 0.8
  assert mean[0.2]['final_accuracy'] < 0.2  # near chance (10 classes)
  for defence in ('median', 'trimmed_mean', 'krum'):
    attacked = _final(grid, 'iid', 'sign_flip', defence, (0.2,))[0.2]['final_accuracy']
    assert attacked > clean - 0.05, (defence, attacked, clean)


def test_robust_aggregators_cost_accuracy_on_dirichlet_0_1_without_attack():
  grid = _grid()
  mean = _final(grid, 'dirichlet_0_1', 'sign_flip', 'mean', (0.0,))[0.0]['final_accuracy']
  krum = _final(grid, 'dirichlet_0_1', 'sign_flip', 'krum', (0.0,))[0.0]['final_accuracy']
  assert mean > 0.75
  assert krum < mean - 0.15, (krum, mean)


def test_boosted_backdoor_beats_the_mean_and_norm_bounding_stops_it():
  grid = _grid()
  mean = _final(grid, 'iid', 'backdoor_boosted', 'mean', (0.05,))[0.05]
  bounded = _final(grid, 'iid', 'backdoor_boosted', 'norm_bounded_mean', (0.05,))[0.05]
  assert mean['final_backdoor_success'] > 0.8 and mean['final_accuracy'] > 0.75  # stealthy
  assert bounded['final_backdoor_success'] < 0.3
  assert bounded['final_accuracy'] > 0.75


def test_bad_inputs_give_clear_errors():
  grid = _grid()
  with pytest.raises(ValueError, match="Unknown grid.attacks entry 'sign_flop'"):
    robustness_grid.cell_config(grid, 'iid', 'sign_flop', 'median')
  config = robustness_grid.cell_config(grid, 'iid', 'sign_flip', 'median')
  with pytest.raises(ValueError, match='byzantine_fraction=0.5 >= 0.5: median needs an honest majority'):
    robustness_grid.validate_cell(config, (0.2, 0.5))
  config.attack = ml_collections.ConfigDict({'name': 'sign_flop', 'fraction': 0.1})
  with pytest.raises(ValueError, match="Unknown config.attack.name='sign_flop'"):
    robustness_grid.validate_cell(config, (0.1,))
  with pytest.raises(ValueError, match=r'krum: f=10 .*n > 2f \+ 2'):
    grid.defences.krum.f = 10
    robustness_grid.run_cell(robustness_grid.cell_config(grid, 'iid', 'sign_flip', 'krum'), (0.1,))


def test_smoke_config_runs_through_the_runner(tmp_path):
  # Every config gets a two-round run through the ordinary runner (experiments/run.py's path).
  from fedjax_lab.runner import run
  grid = robust_grid.get_config('smoke')
  config = robustness_grid.cell_config(grid, 'iid', 'backdoor', 'median', fraction=0.2)
  summary = run(config, str(tmp_path))
  assert summary['final']['round'] == 2
