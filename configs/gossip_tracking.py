"""Decentralized study 'tracking': D-PSGD vs gradient tracking vs exact diffusion under Non-IID data.

  python -m experiments.run --config=configs/gossip_tracking.py --workdir=runs/gossip_tracking
  python -m experiments.figures.gossip_tracking --workdir=runs/gossip_tracking

A sweep. 'least_squares' (task gossip_least_squares): heterogeneous least squares (every node its own
optimum), full-batch gradients, float64, ring of 16: distance of the node average to the global
optimum and consensus error vs iterations, for D-PSGD at two step sizes, gradient tracking and exact
diffusion. Then one runner run per (partition, algorithm): Digits split Dirichlet(0.1) (IID for
reference) over a ring of 16 nodes, mini-batches: node and average-model test accuracy and consensus
error every eval_every iterations. Variants: 'small', 'smoke'.
"""

import ml_collections

from configs import base

PARTITIONS = {'dirichlet': {'data.partition': 'dirichlet', 'data.alpha': 0.1, 'data.min_size': 2},
              'iid': {'data.partition': 'iid'}}
ALGORITHMS = ('dpsgd', 'gradient_tracking', 'exact_diffusion')


def sweep(partitions, algorithms):
  runs = [{'name': 'least_squares', 'overrides': {'task': 'gossip_least_squares'}}]
  for partition in partitions:
    for name in algorithms:
      runs.append({'name': f'{partition}_{name}', 'overrides': {**PARTITIONS[partition], 'algorithm.name': name}})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'gossip_tracking'
  config.rounds = 1000
  config.eval_every = 20
  config.checkpoint_every = 100_000
  config.progress = False
  config.clients_per_round = 16
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 16, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({'name': 'dpsgd', 'learning_rate': 0.1, 'batch_size': 16})
  config.topology = ml_collections.ConfigDict({'name': 'ring', 'weights': 'metropolis_hastings', 'seed': 0,
                                               'gossip': 'auto', 'allow_disconnected': False})
  config.evaluation.global_train_loss = True
  config.study = ml_collections.ConfigDict({
      'num_nodes': 16, 'topology': 'ring', 'ls_dim': 5, 'ls_examples_per_node': 20, 'ls_heterogeneity': 1.0,
      'ls_learning_rates': (0.1, 0.02), 'ls_steps': 1500})
  partitions, algorithms = ('dirichlet', 'iid'), ALGORITHMS
  if arg == 'small':
    config.study.ls_steps, config.rounds, config.eval_every = 30, 20, 10
  elif arg == 'smoke':
    config.study.ls_steps, config.rounds, config.eval_every = 3, 2, 2
    partitions, algorithms = ('iid',), ('gradient_tracking',)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  config.sweep = sweep(partitions, algorithms)
  return config
