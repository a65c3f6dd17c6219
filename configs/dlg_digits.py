"""Gradient inversion on Digits: DLG/iDLG progress, and reconstruction vs defence strength beside accuracy.

  python -m experiments.privacy --study=progress    (-> runs/privacy/progress.json)
  python -m experiments.privacy --study=defenses    (-> runs/privacy/defenses.json)
  python -m experiments.figures.dlg_progress && python -m experiments.figures.privacy_defenses
Variant 'small' (`--config_arg=small`): a few steps and strengths, for smoke tests.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # The engine's ReLU MLP 64-32-10 at initialisation (the DLG papers use sigmoid; ReLU works here).
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.attack = ml_collections.ConfigDict({
      'optimizer': 'lbfgs',
      'num_steps': 300,
      'num_snapshots': 6,
      'snapshot_steps': (1, 3, 10, 30, 100, 300),   # the progress figure's columns (log-spaced)
      'adam_learning_rate': 0.05,
  })
  # Progress figure: which observations to attack.
  config.progress = ml_collections.ConfigDict({
      'examples': (0, 1, 2, 3),       # digits attacked one at a time (FedSGD, one example)
      'batch_size': 4,                # one FedSGD gradient of a batch of this many digits (0: skip)
      'fedavg_local_steps': 3,        # a FedAvg update of one digit after this many local steps (0: skip)
      'fedavg_client_lr': 0.1,
      'mnist1d': True,                # also invert a one-example MNIST-1D gradient (curves)
      'adam': True,                   # also DLG with Adam instead of L-BFGS
  })
  # Defence sweep: attack quality averaged over `examples_per_point` single digits, and the test
  # accuracy of FedSGD trained with the same defence on every client's gradient.
  config.defenses = ml_collections.ConfigDict({
      'examples_per_point': 4,
      'noise': (0.0, 0.01, 0.03, 0.1, 0.3, 1.0),
      'clip': (10.0, 3.0, 1.0, 0.3, 0.1, 0.03),
      'topk': (0.0, 0.5, 0.9, 0.97, 0.99, 0.997),   # fraction of coordinates pruned
      'quantize': (32, 8, 4, 3, 2, 1),               # bits
      'batch': (1, 2, 4, 8),                         # examples behind one gradient
  })
  config.training = ml_collections.ConfigDict({
      'data': {'name': 'digits', 'num_clients': 100, 'partition': 'iid', 'seed': 0},
      'rounds': 200,
      'clients_per_round': 10,
      'server_lr': 0.5,
  })
  if arg == 'small':
    config.attack.num_steps = 20
    config.attack.num_snapshots = 2
    config.attack.snapshot_steps = (5, 20)
    config.progress.examples = (0,)
    config.progress.batch_size = 0          # 0 skips the batch, the FedAvg update and Adam
    config.progress.fedavg_local_steps = 0
    config.progress.mnist1d = False
    config.progress.adam = False
    config.defenses.examples_per_point = 1
    for name in ('noise', 'clip', 'topk', 'quantize', 'batch'):
      config.defenses[name] = config.defenses[name][:2]
    config.training.rounds = 3
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
