"""Study (2), Li et al. (2020): FedAvg on Non-IID Synthetic(alpha, beta) needs a decaying step size.

  python -m experiments.fl_studies --study=noniid
Multinomial logistic regression on 30 users (samples capped at 200 per user), 10 per round, E = 5.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({'name': 'fedprox_synthetic', 'alpha': 1.0, 'beta': 1.0,
                                           'num_users': 30, 'max_samples_per_user': 200, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'logistic_regression'})
  config.rounds = 300
  config.clients_per_round = 10
  config.client_lr = 0.05
  config.client_lr_decay = 'inverse'  # eta_r = eta / (1 + rate r)
  config.client_lr_decay_rate = 0.02
  config.local_epochs = 5
  config.large_epochs = 20
  config.batch_size = 10
  config.prox_mu = 0.1
  config.alpha_beta = ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0))
  if arg == 'small':
    config.rounds = 4
    config.data.num_users = 6
    config.data.max_samples_per_user = 50
    config.clients_per_round = 3
    config.large_epochs = 2
    config.alpha_beta = ((1.0, 1.0),)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
