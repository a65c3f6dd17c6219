"""Study (1), McMahan et al. (2017) at small scale: rounds to a target accuracy, FedSGD vs FedAvg(E, B).

  python -m experiments.fl_studies --study=comm       (this config; 'small' shrinks it)
Digits (1438 training images) over 20 clients, an MLP with one hidden layer of 64, C = 0.5.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 20, 'seed': 0})
  config.partitions = ('iid', 'shards', 'dirichlet')
  # shards: McMahan's pathological split (sort by label, 2 shards per client); dirichlet: label skew.
  config.partition_kwargs = ml_collections.ConfigDict({'shards': {'shards_per_client': 2},
                                                      'dirichlet': {'alpha': 0.3}})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.target = 0.90
  config.clients_per_round = 10
  config.client_lr = 0.05
  config.fedsgd_lr = 0.5
  config.local_epochs = (1, 5, 20)
  config.batch_sizes = (-1, 50, 10)  # -1 = the full local data set (B = inf in the paper)
  config.rounds = 150
  config.fedsgd_rounds = 600
  config.cohort_fractions = (0.05, 0.1, 0.2, 0.5, 1.0)
  config.c_sweep_epochs = 5
  config.c_sweep_batch = 10
  if arg == 'small':
    config.partitions = ('iid', 'shards')
    config.local_epochs = (1, 5)
    config.batch_sizes = (10,)
    config.rounds = 5
    config.fedsgd_rounds = 5
    config.cohort_fractions = (0.5,)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
