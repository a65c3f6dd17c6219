"""Decentralized study 'tracking': D-PSGD vs gradient tracking vs exact diffusion under Non-IID data.

  python -m experiments.decentralized --study=tracking       (this config; 'small' shrinks it)
  python -m experiments.figures.gossip_tracking

Part 1, heterogeneous least squares (every node its own optimum), full-batch gradients, float64,
ring of 16: distance of the node-average to the global optimum and consensus error vs iterations,
for D-PSGD at two step sizes, gradient tracking and exact diffusion. Part 2, Digits split
Dirichlet(alpha) over a ring of 16 nodes (IID for reference), mini-batches: mean node test accuracy
and consensus error vs iterations.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = 'tracking'
  config.seed = 0
  config.num_nodes = 16
  config.topology = 'ring'
  config.ls_dim = 5
  config.ls_examples_per_node = 20
  config.ls_heterogeneity = 1.0
  config.ls_learning_rates = (0.1, 0.02)  # D-PSGD at both; tracking and exact diffusion at the first
  config.ls_steps = 1500
  config.data = ml_collections.ConfigDict({'name': 'digits', 'seed': 0})
  config.partitions = ml_collections.ConfigDict({'dirichlet': {'partition': 'dirichlet', 'alpha': 0.1},
                                                 'iid': {'partition': 'iid'}})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.learning_rate = 0.1
  config.batch_size = 16
  config.steps = 1000
  config.eval_every = 20
  if arg == 'small':
    config.ls_steps = 30
    config.steps = 20
    config.eval_every = 10
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
