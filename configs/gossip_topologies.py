"""Decentralized study 'topologies': consensus and D-PSGD training per topology at N = 64.

  python -m experiments.decentralized --study=topologies     (this config; 'small' shrinks it)
  python -m experiments.figures.gossip_topologies

Part 1, pure gossip (step size 0) from random node values: consensus error vs iterations beside the
spectral prediction rho^(2k). Part 2, D-PSGD (consensus order) on Digits split Dirichlet(0.5) over
the same 64 nodes, an MLP with one hidden layer of 32: loss of the node-average model and
consensus error vs iterations.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = 'topologies'
  config.seed = 0
  config.num_nodes = 64
  config.topologies = ('complete', 'one_peer_exponential', 'exponential', 'hypercube', 'random_regular',
                       'torus', 'ring', 'star')
  config.topology_kwargs = ml_collections.ConfigDict({'random_regular': {'degree': 4}})
  config.weights = 'metropolis_hastings'
  config.gossip_steps = 150
  config.gossip_dim = 16  # values per node in the pure-gossip part
  config.data = ml_collections.ConfigDict({'name': 'digits', 'partition': 'dirichlet', 'alpha': 0.5, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.learning_rate = 0.2
  config.batch_size = 8
  config.steps = 600
  config.eval_every = 10
  if arg == 'small':
    config.num_nodes = 16
    config.topologies = ('complete', 'exponential', 'ring')
    config.gossip_steps = 20
    config.steps = 20
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
