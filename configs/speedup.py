"""Speedup of synchronous data parallelism vs the number of workers m, for several networks.

  python -m experiments.run --config=configs/speedup.py --workdir=runs/speedup
  python -m experiments.figures.speedup --workdir=runs/speedup
A sweep: 'model' (task speedup_model: least squares from its FLOP model; the MLP on scikit-learn
digits from the measured time of one worker's jitted gradient on n/m examples, this CPU, with
modelled communication), then the exact-GD check: one data_parallel_gd run of the MLP per m (Digits
over m workers), whose training losses must not depend on m. Variant: 'smoke'.
"""

import ml_collections

from configs import base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'speedup'
  config.checkpoint_every = 1_000_000
  config.progress = False
  study = config.study = ml_collections.ConfigDict()
  study.num_workers = (1, 2, 4, 8, 16, 32, 64)
  study.least_squares = ml_collections.ConfigDict({'num_examples': 1_000_000, 'dim': 1000, 'flops_per_second': 1e10})
  study.mlp = ml_collections.ConfigDict({'hidden': (200, 200), 'repeats': 30})  # repeats: timed calls per m (median)
  # (label, bandwidth bytes/s, latency s): a fast datacenter link down to a slow one.
  study.networks = (('10 GB/s, 5 us', 1e10, 5e-6), ('1 GB/s, 50 us', 1e9, 5e-5), ('100 MB/s, 500 us', 1e8, 5e-4))
  study.topologies = ('server', 'ring')
  study.stragglers = ml_collections.ConfigDict({'distribution': 'exponential', 'scale': 0.2})
  study.straggler_iterations = 200
  config.rounds = 20  # exact-GD check: iterations per m
  if arg == 'smoke':
    study.num_workers = (1, 2)
    study.least_squares.num_examples = 4096
    study.least_squares.dim = 16
    study.mlp.hidden = (16,)
    study.mlp.repeats = 3
    study.straggler_iterations = 5
    config.rounds = 2
  elif arg:
    raise ValueError(f'Unknown variant {arg!r} of configs/speedup.py; use "" or "smoke".')
  config.eval_every = config.rounds
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 1, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': study.mlp.hidden})
  config.algorithm = ml_collections.ConfigDict({'name': 'data_parallel_gd', 'learning_rate': 0.5})
  config.sweep = ({'name': 'model', 'overrides': {'task': 'speedup_model'}},) + tuple(
      {'name': f'gd_m{m}', 'overrides': {'data.num_clients': m, 'clients_per_round': m}} for m in study.num_workers)
  return config
