"""Decentralized study 'disconnected': two components converge to two different models.

  python -m experiments.run --config=configs/gossip_disconnected.py --workdir=runs/gossip_disconnected
  python -m experiments.figures.gossip_disconnected --workdir=runs/gossip_disconnected

An analysis (config.task='gossip_disconnected', fedjax_lab/runner/tasks/gossip.py) because its data
are built for it. Part 1, 2-D least squares on 16 nodes whose local optima cluster around two centres
(nodes 0-7 near one, 8-15 near the other): gradient tracking on the disconnected graph (two rings of
8) and on the ring of 16; node trajectories and consensus error. Part 2, Digits with nodes 0-7
holding classes 0-4 and nodes 8-15 classes 5-9: D-PSGD on both graphs, test accuracy of each
component's average model on each half of the classes. Variants: 'small', 'smoke'.
"""

import ml_collections

from configs import base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'gossip_disconnected'
  config.task = 'gossip_disconnected'
  config.progress = False
  config.data = ml_collections.ConfigDict({'name': 'digits', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.study = ml_collections.ConfigDict({
      'num_nodes': 16, 'examples_per_node': 20,
      'centers': ((-1.0, 1.0), (1.5, -0.5)),  # local optima of the two halves, plus noise
      'spread': 0.3, 'ls_learning_rate': 0.1, 'ls_steps': 300,
      'learning_rate': 0.2, 'batch_size': 8, 'steps': 600, 'eval_every': 20})
  if arg == 'small':
    config.study.update({'num_nodes': 8, 'ls_steps': 20, 'steps': 20, 'eval_every': 10})
  elif arg == 'smoke':
    config.study.update({'num_nodes': 8, 'ls_steps': 3, 'steps': 2, 'eval_every': 2})
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
