"""Decentralized study 'scaling': accuracy vs number of nodes for ring, exponential and complete graphs.

  python -m experiments.decentralized --study=scaling        (this config; 'small' shrinks it)
  python -m experiments.figures.gossip_scaling

Digits (1438 training images) sorted by label and dealt in 2 shards per node (McMahan's pathological
Non-IID split: each node sees about two classes) over N nodes, N = 4 ... 128 (fewer examples per
node as N grows), D-PSGD with a fixed step and number of iterations, an MLP with one hidden
layer of 32. Reports the test accuracy of the node-average model and the mean of the nodes' own
test accuracies, and the final consensus error.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = 'scaling'
  config.seed = 0
  config.seeds = (0, 1, 2)  # data split, initialisation and sampling; the figure shows mean and spread
  config.num_nodes = (4, 8, 16, 32, 64, 128)
  config.topologies = ('ring', 'exponential', 'complete')
  config.weights = 'metropolis_hastings'
  config.data = ml_collections.ConfigDict({'name': 'digits', 'partition': 'shards', 'shards_per_client': 2,
                                           'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.learning_rate = 0.2
  config.batch_size = 8
  config.steps = 400
  if arg == 'small':
    config.num_nodes = (4, 8)
    config.seeds = (0,)
    config.steps = 10
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
