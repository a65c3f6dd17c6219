"""FedAvg with McMahan's 2NN-style MLP on MNIST-1D, Non-IID (Dirichlet 0.5) clients that drop out.

The main job of the README:
  python -m experiments.run --config=configs/fedavg_mnist1d.py --workdir=runs/fedavg_mnist1d
Variants (`--config=configs/fedavg_mnist1d.py:ARG`): 'smoke' (2 rounds, tiny), 'iid', 'dirichlet0.1'.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'fedavg_mnist1d'
  config.seed = 0
  config.rounds = 1000  # ~12 s on 2 CPU cores; measured test accuracy 0.605 (Dirichlet 0.5), 0.612 (IID)
  config.clients_per_round = 10
  config.dropout_rate = 0.1
  config.deadline = float('inf')  # simulated seconds; clients slower than this drop out (inf: none)
  config.seconds_per_example = 1e-3
  config.speed_sigma = 0.5
  config.eval_every = 10
  config.checkpoint_every = 250
  config.placement = 'auto'
  config.chunk_size = 0
  config.memory_budget_mb = 0  # with placement='chunked' and chunk_size=0: pick the chunk from this budget
  config.num_devices = 0  # 0: every usable core on CPU (one device each), every device on an accelerator
  config.data_placement = 'device'  # 'host': clients stay in host memory, cohorts prefetched
  config.prefetch_depth = 1
  config.progress = True

  config.data = ml_collections.ConfigDict()
  config.data.name = 'mnist1d'
  config.data.num_clients = 100
  config.data.partition = 'dirichlet'
  config.data.alpha = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.name = 'mlp'
  config.model.hidden = (200, 200)

  config.algorithm = ml_collections.ConfigDict()
  config.algorithm.name = 'fedavg'
  config.algorithm.client_optimizer = 'sgd'
  config.algorithm.client_lr = 0.05
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

  if arg == 'smoke':
    config.rounds = 2
    config.eval_every = 1
    config.data.num_clients = 20
    config.clients_per_round = 4
    config.model.hidden = (32,)
    config.progress = False
  elif arg == 'iid':
    config.data.partition = 'iid'
  elif arg.startswith('dirichlet'):
    config.data.alpha = float(arg[len('dirichlet'):])
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke', 'iid' or 'dirichletALPHA'.")
  return config
