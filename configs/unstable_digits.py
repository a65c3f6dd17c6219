"""Study (4): unstable clients (dropout, a round deadline) with unbalanced (log-normal) client sizes.

  python -m experiments.fl_studies --study=unstable
Deadlines are quantiles of the simulated times (examples x E x seconds_per_example x log-normal speed).
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 30, 'partition': 'quantity_skew',
                                           'sigma': 1.0, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.rounds = 100
  config.clients_per_round = 10
  config.client_lr = 0.05
  config.local_epochs = 2
  config.batch_size = 10
  config.target = 0.9
  config.dropout_rates = (0.0, 0.3, 0.6)
  config.deadline_quantiles = (0.8, 0.5, 0.2)
  config.seconds_per_example = 1e-3
  config.speed_sigma = 0.5
  if arg == 'small':
    config.rounds = 3
    config.dropout_rates = (0.0,)
    config.deadline_quantiles = (0.5,)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
