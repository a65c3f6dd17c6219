"""Decentralized study 'topologies': consensus and D-PSGD training per topology at N = 64.

  python -m experiments.run --config=configs/gossip_topologies.py --workdir=runs/gossip_topologies
  python -m experiments.figures.gossip_topologies --workdir=runs/gossip_topologies
A sweep: 'spectrum' (task gossip_spectrum: pure gossip from random node values, consensus error vs
iterations beside rho^(2k)), then one D-PSGD run per topology on Digits split Dirichlet(0.5) over the
same 64 nodes (an MLP with one hidden layer of 32): test loss of the node-average model, global
training loss and consensus error every eval_every iterations. Variants: 'small', 'smoke'.
"""

import ml_collections

from configs import base

TOPOLOGY_KWARGS = {'random_regular': {'degree': 4}}
SCHEDULES = ('one_peer_exponential',)  # time-varying: their own weights


def sweep(topologies):
  runs = [{'name': 'spectrum', 'overrides': {'task': 'gossip_spectrum'}}]
  for name in topologies:
    overrides = {'topology.name': name, **{f'topology.{k}': v for k, v in TOPOLOGY_KWARGS.get(name, {}).items()}}
    if name in SCHEDULES:
      overrides['topology.weights'] = None
    runs.append({'name': name, 'overrides': overrides})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'gossip_topologies'
  config.rounds = 600
  config.eval_every = 10
  config.checkpoint_every = 100_000
  config.progress = False
  num_nodes = 64
  topologies = ('complete', 'one_peer_exponential', 'exponential', 'hypercube', 'random_regular', 'torus', 'ring',
                'star')
  gossip_steps = 150
  if arg == 'small':
    num_nodes, topologies, gossip_steps, config.rounds = 16, ('complete', 'exponential', 'ring'), 20, 20
  elif arg == 'smoke':
    num_nodes, topologies, gossip_steps, config.rounds, config.eval_every = 8, ('ring',), 3, 2, 2
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  config.clients_per_round = num_nodes
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': num_nodes, 'partition': 'dirichlet',
                                           'alpha': 0.5, 'min_size': 2, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({'name': 'dpsgd', 'learning_rate': 0.2, 'batch_size': 8})
  config.topology = ml_collections.ConfigDict({'name': 'ring', 'weights': 'metropolis_hastings', 'seed': 0,
                                               'gossip': 'auto', 'allow_disconnected': False})
  config.evaluation.global_train_loss = True
  config.study = ml_collections.ConfigDict({
      'num_nodes': num_nodes, 'topologies': topologies, 'topology_kwargs': TOPOLOGY_KWARGS,
      'weights': 'metropolis_hastings', 'gossip_steps': gossip_steps, 'gossip_dim': 16})
  config.sweep = sweep(topologies)
  return config
