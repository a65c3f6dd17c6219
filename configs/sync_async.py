"""Synchronous vs asynchronous parallel gradient descent on least squares (the sync/async study).

  python -m experiments.run --config=configs/sync_async.py --workdir=runs/sync_async
  python -m experiments.figures.sync_async_loss --workdir=runs/sync_async     (and timeline, staleness,
                                                                                sync_async_slow_worker)
A sweep. For each straggler probability p, three runner runs on the conditioned least-squares
problem split over m workers (fedjax_lab/runner/simulated.py): 'p<p>_sync' (data_parallel_gd,
step 1/L = 1: the problem's X^T X / n has largest eigenvalue 1 by construction), 'p<p>_async' (every
arrival applies one worker's gradient with step async_lr_scale / (m L)) and 'p<p>_fedbuff' (K
arrivals per step), all on the same compute draws (config.stragglers, seed = config.seed); their
metrics.jsonl rows carry loss_gap = f(w) - f* and sim_time. Then analyses (config.task):
'slow_worker', 'timeline', 'staleness' and, in the full variant, 'ray' (the Ray parameter server).
Simulated time is in seconds of the modelled cluster: compute = least-squares gradient FLOPs /
flops_per_second x straggler factor, communication = latency + bytes / bandwidth per message.
Variants: 'small' (the old smoke sizes, every run), 'smoke' (sync, async, staleness).
"""

import math

import ml_collections

from configs import base
from fedjax_lab import systems


def study_section() -> ml_collections.ConfigDict:
  study = ml_collections.ConfigDict()
  study.problem = ml_collections.ConfigDict({'num_examples': 4096, 'dim': 32, 'noise': 0.5, 'condition_number': 10.0})
  study.num_workers = 16
  study.flops_per_second = 1e8  # one worker: 4 n d / m FLOPs per gradient
  study.network = ml_collections.ConfigDict({'bandwidth': 1e8, 'latency': 2e-5, 'topology': 'ring'})
  study.sync_iterations = 100
  study.async_lr_scale = 1.0
  study.straggler_factor = 10.0
  study.straggler_probabilities = (0.0, 0.01, 0.25)  # loss-vs-time figure, one panel each
  study.fedbuff_k = 4
  study.slow_worker = ml_collections.ConfigDict({
      'factor': 50.0, 'jitter': 0.2, 'lr_scale': 1.0, 'staleness_bound': 2, 'num_workers': 8, 'iterations': 300})
  study.timeline = ml_collections.ConfigDict({'num_workers': 4, 'iterations': 6, 'straggler_probability': 0.25})
  study.staleness = ml_collections.ConfigDict({'num_arrivals': 20000, 'lognormal_scale': 1.0,
                                               'exponential_scale': 1.0})
  study.ray = ml_collections.ConfigDict({'num_workers': 4, 'num_updates': 200, 'delay': 0.02, 'slow_factor': 5.0})
  return study


def loss_runs(study) -> list:
  """Sync, async and FedBuff runs per straggler probability, with the cluster's times computed here."""
  p, m = study.problem, study.num_workers
  network = systems.Network(study.network.bandwidth, study.network.latency, study.network.topology)
  timing = {
      'stragglers.seconds_per_gradient': float(systems.least_squares_gradient_flops(
          math.ceil(p.num_examples / m), p.dim) / study.flops_per_second),
      'stragglers.message_seconds': float(systems.message_seconds(4 * p.dim, network)),
      'stragglers.sync_seconds': float(systems.sync_communication_seconds(4 * p.dim, m, network)),
  }
  async_lr = study.async_lr_scale / m  # L = 1 (see the module docstring)
  runs = []
  for probability in study.straggler_probabilities:
    common = {**timing, 'stragglers.distribution': 'bernoulli', 'stragglers.probability': probability,
              'stragglers.factor': study.straggler_factor}
    iterations = study.sync_iterations
    runs += [
        {'name': f'p{probability:g}_sync', 'overrides': {**common, 'algorithm.name': 'data_parallel_gd',
                                                         'algorithm.learning_rate': 1.0, 'rounds': iterations,
                                                         'eval_every': 1}},
        {'name': f'p{probability:g}_async', 'overrides': {**common, 'algorithm.name': 'async_sgd',
                                                          'algorithm.learning_rate': async_lr,
                                                          'rounds': m * iterations, 'eval_every': m}},
        {'name': f'p{probability:g}_fedbuff', 'overrides': {
            **common, 'algorithm.name': 'fedbuff', 'algorithm.learning_rate': study.fedbuff_k * async_lr,
            'algorithm.buffer_size': study.fedbuff_k, 'rounds': m * iterations, 'eval_every': m}},
    ]
  return runs


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'sync_async'
  config.checkpoint_every = 1_000_000
  config.progress = False
  study = config.study = study_section()
  if arg in ('small', 'smoke'):
    study.ray.num_updates = 8
    study.problem.num_examples = 256
    study.problem.dim = 8
    study.num_workers = 4
    study.sync_iterations = 5
    study.fedbuff_k = 2
    study.slow_worker.num_workers = 4
    study.slow_worker.iterations = 5
    study.straggler_probabilities = (0.25,)
    study.timeline.iterations = 3
    study.staleness.num_arrivals = 200
  elif arg:
    raise ValueError(f'Unknown variant {arg!r} of configs/sync_async.py; use "", "small" or "smoke".')
  p = study.problem
  config.data = ml_collections.ConfigDict({
      'name': 'least_squares', 'num_clients': study.num_workers, 'num_examples': p.num_examples, 'dim': p.dim,
      'noise': p.noise, 'condition_number': p.condition_number})
  config.clients_per_round = study.num_workers
  config.model = ml_collections.ConfigDict({'name': 'linear_regression'})
  config.algorithm = ml_collections.ConfigDict({'name': 'data_parallel_gd', 'learning_rate': 1.0, 'zero_init': True})
  analyses = ('slow_worker', 'timeline', 'staleness') + (('ray',) if arg == '' else ())
  tasks = {'slow_worker': 'async_slow_worker', 'timeline': 'async_timeline', 'staleness': 'async_staleness',
           'ray': 'ray_parameter_server'}
  config.sweep = tuple(loss_runs(study) + [{'name': name, 'overrides': {'task': tasks[name]}} for name in analyses])
  if arg == 'smoke':  # sync, async and one analysis
    config.sweep = tuple(e for e in config.sweep if e['name'].endswith(('_sync', '_async')) or e['name'] == 'staleness')
  return config
