"""Speedup of synchronous data parallelism vs the number of workers m, for several networks.

  python -m experiments.sync_async --config=configs/speedup.py --workdir=runs/sync_async
Least squares uses the FLOP model; the MLP on scikit-learn digits uses the measured time of one
worker's jitted gradient on n/m examples (this CPU), with modelled communication.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'speedup'
  config.seed = 0
  config.num_workers = (1, 2, 4, 8, 16, 32, 64)

  config.least_squares = ml_collections.ConfigDict()
  config.least_squares.num_examples = 1_000_000
  config.least_squares.dim = 1000
  config.least_squares.flops_per_second = 1e10

  config.mlp = ml_collections.ConfigDict()
  config.mlp.hidden = (200, 200)
  config.mlp.repeats = 30  # timed calls per m; the median is used
  config.mlp.gd_iterations = 20  # exact-GD check: the same iterates for every m
  config.mlp.learning_rate = 0.5

  # (label, bandwidth bytes/s, latency s): a fast datacenter link down to a slow one.
  config.networks = (
      ('10 GB/s, 5 us', 1e10, 5e-6),
      ('1 GB/s, 50 us', 1e9, 5e-5),
      ('100 MB/s, 500 us', 1e8, 5e-4),
  )
  config.topologies = ('server', 'ring')
  config.stragglers = ml_collections.ConfigDict({'distribution': 'exponential', 'scale': 0.2})
  config.straggler_iterations = 200

  if arg == 'smoke':
    config.num_workers = (1, 2)
    config.least_squares.num_examples = 4096
    config.least_squares.dim = 16
    config.mlp.hidden = (16,)
    config.mlp.repeats = 3
    config.mlp.gd_iterations = 2
    config.straggler_iterations = 5
  elif arg:
    raise ValueError(f'Unknown variant {arg!r} of configs/speedup.py; use "" or "smoke".')
  return config
