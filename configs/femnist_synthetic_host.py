"""FedAvg on the FEMNIST-sized synthetic stand-in, with the training clients kept in host memory.

The stand-in (3,400 writers, ~220 28x28 examples each, 62 classes; `fedjax_lab/data/femnist_synthetic.py`)
is generated once into memory-mapped .npy files under config.data.cache_dir (~4.7 GB, a few minutes);
with data_placement='host' each round's cohort is gathered from those files and prefetched while
the previous round trains, so the device never holds more than a few cohorts.

  python -m experiments.run --config=configs/femnist_synthetic_host.py --workdir=runs/femnist_synthetic_host
Variants (`--config=configs/femnist_synthetic_host.py:ARG`): 'smoke' (2 rounds, 40 tiny clients),
'mlp' (the 2NN instead of the CNN), 'device' (same run with every client on the device, for comparison).
The CNN is meant for an accelerator: on the 2-core CPU a round of 10 clients took ~65 s (measured while
another job shared the machine; XLA:CPU convolutions are slow), against ~0.03 s with 'mlp'.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'femnist_synthetic_host'
  config.seed = 0
  config.rounds = 500
  config.clients_per_round = 10
  config.dropout_rate = 0.0
  config.eval_every = 20
  config.checkpoint_every = 100
  config.placement = 'auto'
  config.chunk_size = 0
  config.num_devices = 0  # 0: every usable core on CPU (one device each), every device on an accelerator
  config.progress = True
  config.data_placement = 'host'
  config.prefetch_depth = 1

  config.data = ml_collections.ConfigDict()
  config.data.name = 'femnist_synthetic'
  config.data.num_clients = 3400
  config.data.mean_examples = 220
  config.data.test_examples = 2000
  config.data.cache_dir = ml_collections.config_dict.placeholder(str)  # None: $FEDJAX_LAB_CACHE or ~/.cache

  config.model = ml_collections.ConfigDict()
  config.model.name = 'cnn'  # McMahan et al.'s CNN, the usual FEMNIST model

  config.algorithm = ml_collections.ConfigDict()
  config.algorithm.name = 'fedavg'
  config.algorithm.client_optimizer = 'sgd'
  config.algorithm.client_lr = 0.05
  config.algorithm.server_optimizer = 'sgd'
  config.algorithm.server_lr = 1.0
  config.algorithm.local_epochs = 1
  config.algorithm.batch_size = 20
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
    config.data.num_clients = 40
    config.data.mean_examples = 24
    config.data.test_examples = 50
    config.clients_per_round = 4
    config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
    config.progress = False
  elif arg == 'mlp':
    config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (200, 200)})
  elif arg == 'device':
    config.data_placement = 'device'
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke', 'mlp' or 'device'.")
  return config
