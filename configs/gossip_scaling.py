"""Decentralized study 'scaling': accuracy vs number of nodes for ring, exponential and complete graphs.

  python -m experiments.run --config=configs/gossip_scaling.py --workdir=runs/gossip_scaling
  python -m experiments.figures.gossip_scaling --workdir=runs/gossip_scaling
Digits sorted by label and dealt in 2 shards per node (McMahan's pathological split) over N nodes,
N = 4 ... 128, D-PSGD with a fixed step and number of iterations, an MLP with one hidden layer of
32. One run per (seed, N, topology); the seed drives the data split, the initialisation and the
batches. The last evaluation (eval_every = rounds / 10) gives the average-model and node test
accuracy, the consensus error and the training loss of the last 10% of iterations.
Variants: 'small', 'smoke'.
"""

import ml_collections

from configs import base


def sweep(seeds, num_nodes, topologies):
  return tuple({'name': f's{seed}_n{n}_{topology}',
                'overrides': {'seed': seed, 'data.seed': seed, 'data.num_clients': n, 'clients_per_round': n,
                              'topology.name': topology}}
               for seed in seeds for n in num_nodes for topology in topologies)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'gossip_scaling'
  config.rounds = 400
  config.checkpoint_every = 100_000
  config.progress = False
  config.data = ml_collections.ConfigDict({'name': 'digits', 'partition': 'shards', 'shards_per_client': 2,
                                           'num_clients': 4, 'seed': 0})
  config.clients_per_round = 4
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({'name': 'dpsgd', 'learning_rate': 0.2, 'batch_size': 8})
  config.topology = ml_collections.ConfigDict({'name': 'ring', 'weights': 'metropolis_hastings', 'seed': 0,
                                               'gossip': 'auto', 'allow_disconnected': False})
  config.evaluation.global_train_loss = True
  seeds, num_nodes, topologies = (0, 1, 2), (4, 8, 16, 32, 64, 128), ('ring', 'exponential', 'complete')
  if arg == 'small':
    seeds, num_nodes, config.rounds = (0,), (4, 8), 10
  elif arg == 'smoke':
    seeds, num_nodes, topologies, config.rounds = (0,), (4,), ('ring', 'complete'), 2
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  config.eval_every = max(1, config.rounds // 10)
  config.sweep = sweep(seeds, num_nodes, topologies)
  return config
