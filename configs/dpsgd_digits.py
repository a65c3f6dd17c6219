"""Decentralized training through the runner: D-PSGD (or gradient tracking) on scikit-learn digits.

  python -m experiments.run --config=configs/dpsgd_digits.py --workdir=runs/dpsgd_digits
  python -m experiments.run --config=configs/dpsgd_digits.py:tracking --workdir=runs/tracking_digits
  python -m experiments.run --config=configs/dpsgd_digits.py --workdir=runs/x --config.topology.name=exponential

16 nodes on a ring (Metropolis-Hastings weights), each holding one Dirichlet(0.3) client of digits; every
round every node mixes with its neighbours and takes a gradient step. metrics.jsonl reports the node
average's test accuracy (`test_accuracy`), the mean and worst node's (`test_node_accuracy_mean`,
`test_node_accuracy_worst`) and the consensus error. Variants: 'smoke', 'tracking' (gradient
tracking), 'atc', 'iid'. The studies in experiments/decentralized.py go further (topologies, scaling).
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'dpsgd_digits'
  config.seed = 0
  config.rounds = 600
  config.clients_per_round = 16  # every node, every round
  config.dropout_rate = 0.0
  config.eval_every = 50
  config.checkpoint_every = 200
  config.placement = 'auto'
  config.chunk_size = 0
  config.num_devices = 0  # 0: every usable core on CPU (one device each), every device on an accelerator
  config.progress = True

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

  config.topology = ml_collections.ConfigDict()
  config.topology.name = 'ring'
  config.topology.weights = 'metropolis_hastings'
  config.topology.gossip = 'auto'

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
