"""DP-FedAvg on Digits: test accuracy vs epsilon at several clients-per-round (McMahan et al. 2018).

Every one of the 1438 training digits is a client. Each round a Poisson cohort (rate q = m / N) runs
one local SGD step; the server clips, sums, adds N(0, (sigma C)^2) and divides by m (central DP),
then takes a momentum step. sigma is calibrated per (m, target epsilon) with the Poisson RDP
accountant over `rounds` rounds.

  python -m experiments.privacy --study=dp   (-> runs/privacy/dp.json)
  python -m experiments.figures.dp_accuracy_vs_epsilon
Variant 'small': tiny, for smoke tests.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 1438, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.rounds = 300
  config.client_lr = 0.5
  config.local_epochs = 1
  config.batch_size = 1
  config.server_lr = 1.0
  config.server_momentum = 0.9
  config.dp = ml_collections.ConfigDict({
      'name': 'central',
      'clip_norm': 0.3,
      'delta': 1e-4,            # below 1 / N
      'sampling': 'poisson',
      'accountant': 'rdp',
  })
  config.clients_per_round = (20, 50, 200)
  config.target_epsilons = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
  config.clipped_baseline = True   # also train with clipping and no noise (epsilon = inf)
  if arg == 'small':
    config.data.num_clients = 200
    config.rounds = 3
    config.clients_per_round = (10,)
    config.target_epsilons = (8.0,)
    config.clipped_baseline = False
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
