"""Gradient inversion on Digits: DLG/iDLG progress, and reconstruction vs defence strength beside accuracy.

  python -m experiments.run --config=configs/dlg_digits.py --workdir=runs/dlg_digits
  python -m experiments.figures.dlg_progress --workdir=runs/dlg_digits
  python -m experiments.figures.privacy_defenses --workdir=runs/dlg_digits
A sweep of two analyses (config.task, fedjax_lab/runner/tasks/privacy.py): 'progress'
(inversion_progress) and 'defenses' (inversion_defenses), each writing result.json; their arguments
are config.study. Variants: 'small' (a few steps and strengths), 'smoke' (tinier).
"""

import ml_collections

from configs import base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'dlg_digits'
  config.progress = False
  config.sweep = ({'name': 'progress', 'overrides': {'task': 'inversion_progress'}},
                  {'name': 'defenses', 'overrides': {'task': 'inversion_defenses'}})
  config.study = ml_collections.ConfigDict()
  study = config.study
  # The engine's ReLU MLP 64-32-10 at initialisation (the DLG papers use sigmoid; ReLU works here).
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  study.attack = ml_collections.ConfigDict({
      'optimizer': 'lbfgs',
      'num_steps': 300,
      'num_snapshots': 6,
      'snapshot_steps': (1, 3, 10, 30, 100, 300),   # the progress figure's columns (log-spaced)
      'adam_learning_rate': 0.05,
  })
  # Progress figure: which observations to attack.
  study.progress = ml_collections.ConfigDict({
      'examples': (0, 1, 2, 3),       # digits attacked one at a time (FedSGD, one example)
      'batch_size': 4,                # one FedSGD gradient of a batch of this many digits (0: skip)
      'fedavg_local_steps': 3,        # a FedAvg update of one digit after this many local steps (0: skip)
      'fedavg_client_lr': 0.1,
      'mnist1d': True,                # also invert a one-example MNIST-1D gradient (curves)
      'adam': True,                   # also DLG with Adam instead of L-BFGS
  })
  # Defence sweep: attack quality averaged over `examples_per_point` single digits, and the test
  # accuracy of FedSGD trained with the same defence on every client's gradient.
  study.defenses = ml_collections.ConfigDict({
      'examples_per_point': 4,
      'noise': (0.0, 0.01, 0.03, 0.1, 0.3, 1.0),
      'clip': (10.0, 3.0, 1.0, 0.3, 0.1, 0.03),
      'topk': (0.0, 0.5, 0.9, 0.97, 0.99, 0.997),   # fraction of coordinates pruned
      'quantize': (32, 8, 4, 3, 2, 1),               # bits
      'batch': (1, 2, 4, 8),                         # examples behind one gradient
  })
  study.training = ml_collections.ConfigDict({
      'data': {'name': 'digits', 'num_clients': 100, 'partition': 'iid', 'seed': 0},
      'rounds': 200,
      'clients_per_round': 10,
      'server_lr': 0.5,
  })
  if arg in ('small', 'smoke'):
    study.attack.num_steps = 20
    study.attack.num_snapshots = 2
    study.attack.snapshot_steps = (5, 20)
    study.progress.examples = (0,)
    study.progress.batch_size = 0          # 0 skips the batch, the FedAvg update and Adam
    study.progress.fedavg_local_steps = 0
    study.progress.mnist1d = False
    study.progress.adam = False
    study.defenses.examples_per_point = 1
    for name in ('noise', 'clip', 'topk', 'quantize', 'batch'):
      study.defenses[name] = study.defenses[name][:2]
    study.training.rounds = 3
    if arg == 'smoke':
      study.attack.num_steps = 5
      study.attack.snapshot_steps = (2, 5)
      study.defenses.noise = study.defenses.noise[1:2]  # one defence, one FedSGD training
      for name in ('clip', 'topk', 'quantize', 'batch'):
        study.defenses[name] = ()
      study.training.rounds = 2
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
