"""Decentralized training through the runner: D-PSGD (or gradient tracking) on scikit-learn digits.

  python -m experiments.run --config=configs/dpsgd_digits.py --workdir=runs/dpsgd_digits
  python -m experiments.run --config=configs/dpsgd_digits.py:tracking --workdir=runs/tracking_digits
  python -m experiments.run --config=configs/dpsgd_digits.py --workdir=runs/x --config.topology.name=exponential

16 nodes on a ring (Metropolis-Hastings weights), each holding one Dirichlet(0.3) client of digits; every
round every node mixes with its neighbours and takes a gradient step. metrics.jsonl reports the node
average's test accuracy (`test_accuracy`), the mean and worst node's (`test_node_accuracy_mean`,
`test_node_accuracy_worst`) and the consensus error. Variants: 'smoke', 'tracking' (gradient
tracking), 'atc', 'iid'. The decentralized studies go further: configs/gossip_{topologies,scaling,
disconnected,tracking}.py, each run with experiments.run (docs/notes/decentralized.md).
"""

import ml_collections

from configs import base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'dpsgd_digits'
  config.rounds = 600
  config.clients_per_round = 16  # every node, every round
  config.eval_every = 50
  config.checkpoint_every = 200

  config.data = ml_collections.ConfigDict()
  config.data.name = 'digits'
  config.data.num_clients = 16
  config.data.partition = 'dirichlet'
  config.data.alpha = 0.3

  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})

  config.algorithm = ml_collections.ConfigDict()
  config.algorithm.name = 'dpsgd'
  config.algorithm.order = 'consensus'
  config.algorithm.learning_rate = 0.1
  config.algorithm.batch_size = 16

  config.topology.name = 'ring'  # any graph of fedjax_lab.topology, with its arguments as fields
  config.topology.weights = 'metropolis_hastings'
  config.topology.gossip = 'auto'
  config.topology.allow_disconnected = False

  if arg == 'smoke':
    config.rounds = 4
    config.eval_every = 2
    config.checkpoint_every = 2
    config.data.num_clients = 8
    config.clients_per_round = 8
    config.progress = False
  elif arg == 'tracking':
    config.algorithm.name = 'gradient_tracking'
    del config.algorithm.order
  elif arg == 'atc':
    config.algorithm.order = 'atc'
  elif arg == 'iid':
    config.data.partition = 'iid'
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke', 'tracking', 'atc' or 'iid'.")
  return config
