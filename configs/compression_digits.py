"""Study (3): accuracy vs uploaded bytes for quantization (with/without rotation) and top-k (with/without EF).

  python -m experiments.run --config=configs/compression_digits.py --workdir=runs/compression_digits
  python -m experiments.figures.compression_bytes --workdir=runs/compression_digits
One run per (compressor, seed); the figure averages the last 5% of rounds over seeds and reads
bytes_up_total. Variants: 'small' (the old --small), 'smoke'.
"""

import ml_collections

from configs import base

COMPRESSORS = (
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


def run_name(section: dict) -> str:
  if section['name'] == 'none':
    return 'none'
  if section['name'] == 'quantize':
    return f'quantize_{section["bits"]}bit' + ('_rotate' if section.get('rotate') else '')
  return f'topk_{section["fraction"]:g}' + ('_ef' if section.get('error_feedback', True) else '_no_ef')


def sweep(compressors, seeds):
  return tuple({'name': f'{run_name(c)}_seed{s}', 'overrides': {'compression': dict(c), 'seed': s}}
               for c in compressors for s in range(seeds))


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'compression_digits'
  config.rounds = 100
  config.eval_every = 1
  config.checkpoint_every = 100_000
  config.progress = False
  config.clients_per_round = 10
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 20, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.05, 'server_optimizer': 'sgd', 'server_lr': 1.0,
      'local_epochs': 1, 'batch_size': 10})
  if arg == '':
    config.sweep = sweep(COMPRESSORS, 3)
  elif arg == 'small':
    config.rounds = 3
    config.sweep = sweep(COMPRESSORS[:2] + COMPRESSORS[6:8], 1)
  elif arg == 'smoke':
    config.rounds = 2
    config.sweep = sweep((COMPRESSORS[0], COMPRESSORS[6]), 1)
  else:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
