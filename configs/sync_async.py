"""Synchronous vs asynchronous parallel gradient descent on least squares (the sync/async study).

  python -m experiments.sync_async --config=configs/sync_async.py --workdir=runs/sync_async
  python -m experiments.sync_async --config=configs/sync_async.py:smoke --workdir=/tmp/sync_async_smoke
Figures read runs/sync_async/*.json (see docs/notes/sync_async.md). Simulated time is in seconds of
the modelled cluster: compute = least-squares gradient FLOPs / flops_per_second x straggler factor,
communication = latency + bytes / bandwidth per message.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'sync_async'
  config.seed = 0

  config.problem = ml_collections.ConfigDict()
  config.problem.num_examples = 4096
  config.problem.dim = 32
  config.problem.noise = 0.5
  config.problem.condition_number = 10.0

  config.num_workers = 16
  config.flops_per_second = 1e8  # one worker: 4 n d / m FLOPs per gradient
  config.network = ml_collections.ConfigDict({'bandwidth': 1e8, 'latency': 2e-5, 'topology': 'ring'})

  # Sync: step 1/L on the mean gradient. Async: every arrival applies one worker's gradient, with
  # step async_lr_scale / (m L), i.e. one sync step's worth of movement per m arrivals.
  config.sync_iterations = 100
  config.async_lr_scale = 1.0
  config.straggler_factor = 10.0
  config.straggler_probabilities = (0.0, 0.01, 0.25)  # loss-vs-time figure, one panel each
  config.fedbuff_k = 4

  # One very slow worker (sync_async_slow_worker figure).
  config.slow_worker = ml_collections.ConfigDict()
  config.slow_worker.factor = 50.0
  config.slow_worker.jitter = 0.2  # every worker: 1 + Exp(0.2) (no lock-step)
  config.slow_worker.lr_scale = 1.0  # async step lr_scale / (m L); damped: m times that / (1 + tau)
  config.slow_worker.staleness_bound = 2
  config.slow_worker.num_workers = 8
  config.slow_worker.iterations = 300  # sync iterations; async runs m x as many arrivals

  # Gantt chart.
  config.timeline = ml_collections.ConfigDict()
  config.timeline.num_workers = 4
  config.timeline.iterations = 6
  config.timeline.straggler_probability = 0.25

  # Staleness histograms: one line per straggler model.
  config.staleness = ml_collections.ConfigDict()
  config.staleness.num_arrivals = 20000
  config.staleness.lognormal_scale = 1.0
  config.staleness.exponential_scale = 1.0

  # Ray parameter server on this machine (measured wall-clock; `--studies=ray`).
  config.ray = ml_collections.ConfigDict()
  config.ray.num_workers = 4
  config.ray.num_updates = 200  # async arrivals; sync runs num_updates / m rounds (same gradients)
  config.ray.delay = 0.02  # injected seconds per gradient
  config.ray.slow_factor = 5.0  # worker 0's delay multiplier in the second pair of runs

  if arg == 'smoke':
    config.ray.num_updates = 8
    config.problem.num_examples = 256
    config.problem.dim = 8
    config.num_workers = 4
    config.sync_iterations = 5
    config.fedbuff_k = 2
    config.slow_worker.num_workers = 4
    config.slow_worker.iterations = 5
    config.straggler_probabilities = (0.25,)
    config.timeline.iterations = 3
    config.staleness.num_arrivals = 200
  elif arg:
    raise ValueError(f'Unknown variant {arg!r} of configs/sync_async.py; use "" or "smoke".')
  return config
