"""Study (3): accuracy vs uploaded bytes for quantization (with/without rotation) and top-k (with/without EF).

  python -m experiments.fl_studies --study=compression
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seeds = 3
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 20, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.rounds = 100
  config.clients_per_round = 10
  config.client_lr = 0.05
  config.local_epochs = 1
  config.batch_size = 10
  config.compressors = (
      {'name': 'none'},
      {'name': 'quantize', 'bits': 8, 'rotate': False},
      {'name': 'quantize', 'bits': 4, 'rotate': False},
      {'name': 'quantize', 'bits': 4, 'rotate': True},
      {'name': 'quantize', 'bits': 2, 'rotate': False},
      {'name': 'quantize', 'bits': 2, 'rotate': True},
      {'name': 'topk', 'fraction': 0.1, 'error_feedback': True},
      {'name': 'topk', 'fraction': 0.1, 'error_feedback': False},
      {'name': 'topk', 'fraction': 0.01, 'error_feedback': True},
      {'name': 'topk', 'fraction': 0.01, 'error_feedback': False},
  )
  if arg == 'small':
    config.seeds = 1
    config.rounds = 3
    config.compressors = config.compressors[:2] + config.compressors[6:8]
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '' or 'small'.")
  return config
