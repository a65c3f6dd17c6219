"""The robustness grid: attack x defence x heterogeneity x Byzantine fraction on scikit-learn digits.

  python -m experiments.run --config=configs/robust_grid.py --workdir=runs/robust_grid
  python -m experiments.run --config=configs/robust_grid.py:backdoor --workdir=runs/robust_backdoor
  python -m experiments.figures.robust_heatmap --workdir=runs/robust_grid

FedAvg with a small MLP, 20 clients, all of them in every round. One sweep: one runner run per
(heterogeneity, attack, defence, Byzantine fraction, seed), each its own workdir (so the grid resumes
cell by cell); who is Byzantine is the runner's mask (config.attack.fraction, seed + 1). Fraction 0
of the first attack is the no-attack column (an attack with nobody Byzantine changes nothing).
Defences that take f (Krum, Multi-Krum, Bulyan) or beta (trimmed mean) are set for the largest
fraction of the grid, as a defender who knows an upper bound but not the actual count would; Bulyan
is capped at its own limit f <= (n - 3) / 4. Backdoor runs also report backdoor_success.

`config.study` keeps the grid's axes (grid) and each name's sections (partitions, attacks, defences);
`cell_overrides` gives one cell's overrides (also usable with `sweep.apply_overrides`).
"""

import ml_collections

from configs import base
from fedjax_lab.aggregators.robust import num_byzantine


def base_config() -> ml_collections.ConfigDict:
  """One cell's runner config (attack and aggregator filled in per cell)."""
  config = base.get_base_config()
  config.name = 'robust_digits'
  config.rounds = 30
  config.clients_per_round = 20
  config.eval_every = 5
  config.checkpoint_every = 1000
  config.progress = False
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 20, 'partition': 'iid', 'alpha': 1.0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.1, 'server_optimizer': 'sgd', 'server_lr': 1.0,
      'local_epochs': 1, 'batch_size': 16, 'prox_mu': 0.0, 'client_lr_decay': 'none', 'client_lr_decay_rate': 0.0})
  return config


# heterogeneity name -> config.data fields
PARTITIONS = {
    'iid': {'partition': 'iid'},
    'dirichlet_1': {'partition': 'dirichlet', 'alpha': 1.0},
    'dirichlet_0_1': {'partition': 'dirichlet', 'alpha': 0.1},
}


def attack_sections(clients_per_round: int) -> dict:
  """attack name -> config.attack fields (without fraction)."""
  return {
      # Scaled sign flip: -10 u. With 20 % attackers the mean moves along -(0.8 - 2) g = +1.2 g, uphill.
      'sign_flip': {'name': 'sign_flip', 'scale': 10.0},
      'gaussian_noise': {'name': 'gaussian_noise', 'std': 1.0},
      'alie': {'name': 'alie'},  # z from Baruch et al.'s formula, per round
      'ipm': {'name': 'ipm', 'epsilon': 0.5},
      'label_flip': {'name': 'label_flip'},
      'backdoor': {'name': 'backdoor', 'target_label': 0, 'poison_fraction': 0.5, 'trigger_size': 2,
                   'trigger_value': 1.0},
      'backdoor_boosted': {'name': 'backdoor_boosted', 'target_label': 0, 'poison_fraction': 0.5,
                           'trigger_size': 2, 'trigger_value': 1.0, 'server_lr': 1.0},
  }


def defence_sections(clients_per_round: int, max_fraction: float) -> dict:
  """defence name -> config.aggregator fields (plus an optional config.preaggregation)."""
  f = num_byzantine(max_fraction, clients_per_round)
  return {
      'mean': {'name': 'mean'},
      'median': {'name': 'median'},
      'trimmed_mean': {'name': 'trimmed_mean', 'f': f},  # the same f as Krum (not beta = fraction)
      'krum': {'name': 'krum', 'f': f},
      'multi_krum': {'name': 'multi_krum', 'f': f},
      'bulyan': {'name': 'bulyan', 'f': min(f, (clients_per_round - 3) // 4)},
      'geometric_median': {'name': 'geometric_median', 'nu': 1e-6, 'iterations': 5},
      'centered_clipping': {'name': 'centered_clipping', 'tau': 0.1, 'iterations': 3},
      'norm_bounded_mean': {'name': 'norm_bounded_mean', 'max_norm': 0.3},
      'nnm_median': {'name': 'median', 'preaggregation': {'name': 'nnm', 'f': f}},
  }


def cell_overrides(study, partition: str, attack: str, defence: str, fraction: float, seed: int = 0) -> dict:
  """The overrides of one grid cell: data fields, the attack (with its fraction), the defence, the seed."""
  for value, table, field in ((partition, study.partitions, 'config.study.partitions'),
                              (attack, study.attacks, 'config.study.attacks'),
                              (defence, study.defences, 'config.study.defences')):
    if value not in table:
      raise ValueError(f'Unknown {field} entry {value!r}; choose one of {sorted(table)}.')
  section = dict(study.defences[defence])
  overrides = {f'data.{k}': v for k, v in dict(study.partitions[partition]).items()}
  overrides['attack'] = {**dict(study.attacks[attack]), 'fraction': float(fraction)}
  overrides['preaggregation'] = dict(section.pop('preaggregation', {'name': 'none'}))
  overrides['aggregator'] = section
  overrides['seed'] = seed
  return overrides


def cell_name(partition: str, attack: str, defence: str, fraction: float, seed: int) -> str:
  return f'{partition}-{attack}-{defence}-f{fraction:g}-s{seed}'


def sweep(study) -> tuple:
  """Every (partition, attack, defence, fraction, seed); fraction 0 once per (partition, defence, seed)."""
  runs = []
  grid = study.grid
  for seed in grid.seeds:
    for partition in grid.partitions:
      for index, attack in enumerate(grid.attacks):
        fractions = [f for f in grid.fractions if f > 0 or index == 0]
        for defence in grid.defences:
          for fraction in fractions:
            name = cell_name(partition, attack if fraction > 0 else 'none', defence, fraction, seed)
            runs.append({'name': name, 'overrides': cell_overrides(study, partition, attack, defence, fraction, seed)})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base_config()
  config.name = 'robust_grid'
  study = config.study = ml_collections.ConfigDict()
  grid = study.grid = ml_collections.ConfigDict()
  grid.partitions = tuple(PARTITIONS)
  # Backdoors have their own grid (':backdoor'); Multi-Krum and Bulyan are defined below and can be
  # added here (each cell is one run per fraction, ~1-3 s each on 2 cores).
  grid.attacks = ('sign_flip', 'gaussian_noise', 'alie', 'ipm', 'label_flip')
  grid.defences = ('mean', 'median', 'trimmed_mean', 'krum', 'geometric_median',
                   'centered_clipping', 'norm_bounded_mean', 'nnm_median')
  grid.fractions = (0.0, 0.1, 0.2, 0.3)
  grid.seeds = (0,)
  if arg == 'smoke':
    config.rounds = 2
    config.eval_every = 1
    grid.partitions = ('iid',)
    grid.attacks = ('backdoor',)
    grid.defences = ('median',)
    grid.fractions = (0.0, 0.2)
  elif arg == 'quick':
    # A few minutes on 2 cores.
    config.rounds = 20
    grid.partitions = ('iid', 'dirichlet_0_1')
    grid.attacks = ('sign_flip', 'alie', 'backdoor_boosted')
    grid.defences = ('mean', 'median', 'krum', 'norm_bounded_mean')
    grid.fractions = (0.0, 0.05, 0.2)
  elif arg == 'backdoor':
    # Backdoor vs clean accuracy: with and without boosting, one attacker in 20 (5 %).
    grid.partitions = ('iid', 'dirichlet_1')
    grid.attacks = ('backdoor', 'backdoor_boosted')
    grid.defences = ('mean', 'norm_bounded_mean', 'median', 'krum', 'centered_clipping')
    grid.fractions = (0.0, 0.05, 0.1, 0.2)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'smoke', 'quick' or 'backdoor'.")
  study.partitions = PARTITIONS
  study.attacks = attack_sections(config.clients_per_round)
  study.defences = defence_sections(config.clients_per_round, max(grid.fractions))
  config.sweep = sweep(study)
  return config
