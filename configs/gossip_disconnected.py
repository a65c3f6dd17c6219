"""Decentralized study 'disconnected': two components converge to two different models.

  python -m experiments.decentralized --study=disconnected   (this config; 'small' shrinks it)
  python -m experiments.figures.gossip_disconnected

Part 1, 2-D least squares on 16 nodes whose local optima cluster around two centres (nodes 0-7
near one, 8-15 near the other): gradient tracking on the disconnected graph (two rings of 8) and on
the ring of 16; node trajectories in the plane and consensus error. Part 2, Digits with nodes 0-7
holding classes 0-4 and nodes 8-15 classes 5-9: D-PSGD on both graphs, test accuracy of each
component's average model on each half of the classes.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = 'disconnected'
  config.seed = 0
  config.num_nodes = 16
  config.examples_per_node = 20
  config.centers = ((-1.0, 1.0), (1.5, -0.5))  # local optima of the two halves, plus noise
  config.spread = 0.3
  config.ls_learning_rate = 0.1
  config.ls_steps = 300
  config.data = ml_collections.ConfigDict({'name': 'digits', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.learning_rate = 0.2
  config.batch_size = 8
  config.steps = 600
  config.eval_every = 20
  if arg == 'small':
    config.num_nodes = 8
    config.ls_steps = 20
    config.steps = 20
    config.eval_every = 10
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
