"""The robustness grid: attack x defence x heterogeneity x Byzantine fraction on scikit-learn digits.

  python -m experiments.robustness_grid --config=configs/robust_grid.py --outdir=runs/robust_grid
  python -m experiments.robustness_grid --config=configs/robust_grid.py:smoke --outdir=/tmp/grid

FedAvg with a small MLP, 20 clients, all of them in every round. One compiled round per
(heterogeneity, attack, defence) serves every Byzantine fraction: who is Byzantine is a mask,
and fraction 0 of any attack is the no-attack column. Defences that take f (Krum, Multi-Krum,
Bulyan) or beta (trimmed mean) are set for the largest fraction of the grid, as a defender who
knows an upper bound but not the actual count would; Bulyan is capped at its own limit
f <= (n - 3) / 4.

`config.base` is a complete runner config (usable with experiments/run.py); `config.grid` lists
the axes; `config.attacks` / `config.defences` give each name's config sections.
"""

import ml_collections

from fedjax_lab.aggregators.robust import num_byzantine


def base_config() -> ml_collections.ConfigDict:
  """One cell's runner config (attack and aggregator filled in per cell)."""
  config = ml_collections.ConfigDict()
  config.name = 'robust_digits'
  config.seed = 0
  config.rounds = 30
  config.clients_per_round = 20
  config.dropout_rate = 0.0
  config.eval_every = 5
  config.checkpoint_every = 1000
  config.placement = 'auto'
  config.chunk_size = 0
  config.num_devices = 1
  config.progress = False

  config.data = ml_collections.ConfigDict()
  config.data.name = 'digits'
  config.data.num_clients = 20
  config.data.partition = 'iid'
  config.data.alpha = 1.0

  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})

  config.algorithm = ml_collections.ConfigDict()
  config.algorithm.name = 'fedavg'
  config.algorithm.client_optimizer = 'sgd'
  config.algorithm.client_lr = 0.1
  config.algorithm.server_optimizer = 'sgd'
  config.algorithm.server_lr = 1.0
  config.algorithm.local_epochs = 1
  config.algorithm.batch_size = 16
  config.algorithm.prox_mu = 0.0
  config.algorithm.client_lr_decay = 'none'
  config.algorithm.client_lr_decay_rate = 0.0

  config.aggregator = ml_collections.ConfigDict({'name': 'mean'})
  config.attack = ml_collections.ConfigDict({'name': 'none', 'fraction': 0.0})
  config.compression = ml_collections.ConfigDict({'name': 'none'})
  config.dp = ml_collections.ConfigDict({'name': 'none'})
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


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.base = base_config()
  config.grid = ml_collections.ConfigDict()
  config.grid.partitions = tuple(PARTITIONS)
  # Backdoors have their own grid (':backdoor'); Multi-Krum and Bulyan are defined below and can be
  # added here (each cell costs one compilation and its runs, 1-3 s on 2 cores; the full grid takes ~6 min).
  config.grid.attacks = ('sign_flip', 'gaussian_noise', 'alie', 'ipm', 'label_flip')
  config.grid.defences = ('mean', 'median', 'trimmed_mean', 'krum', 'geometric_median',
                          'centered_clipping', 'norm_bounded_mean', 'nnm_median')
  config.grid.fractions = (0.0, 0.1, 0.2, 0.3)
  config.seeds = (0,)
  if arg == 'smoke':
    config.base.rounds = 2
    config.base.eval_every = 1
    config.grid.partitions = ('iid',)
    config.grid.attacks = ('sign_flip', 'backdoor')
    config.grid.defences = ('mean', 'median')
    config.grid.fractions = (0.0, 0.2)
  elif arg == 'quick':
    # What the figure scripts run when no grid results exist yet (a few minutes on 2 cores).
    config.base.rounds = 20
    config.grid.partitions = ('iid', 'dirichlet_0_1')
    config.grid.attacks = ('sign_flip', 'alie', 'backdoor_boosted')
    config.grid.defences = ('mean', 'median', 'krum', 'norm_bounded_mean')
    config.grid.fractions = (0.0, 0.05, 0.2)
  elif arg == 'backdoor':
    # Backdoor vs clean accuracy: with and without boosting, one attacker in 20 (5 %).
    config.grid.partitions = ('iid', 'dirichlet_1')
    config.grid.attacks = ('backdoor', 'backdoor_boosted')
    config.grid.defences = ('mean', 'norm_bounded_mean', 'median', 'krum', 'centered_clipping')
    config.grid.fractions = (0.0, 0.05, 0.1, 0.2)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'smoke', 'quick' or 'backdoor'.")
  clients = config.base.clients_per_round
  config.partitions = PARTITIONS
  config.attacks = attack_sections(clients)
  config.defences = defence_sections(clients, max(config.grid.fractions))
  return config
