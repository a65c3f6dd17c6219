"""Systems analyses of the sync/async and speedup studies (`config.study` holds their arguments).

The sync-vs-async loss curves themselves are training runs of the runner (configs/sync_async.py:
data_parallel_gd and the asynchronous server, fedjax_lab/runner/simulated.py); these are the rest.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import engine
from fedjax_lab import systems
from fedjax_lab.algorithms import async_ps as ap
from fedjax_lab.algorithms import data_parallel as dp
from fedjax_lab.models import models


def _network(study) -> systems.Network:
  return systems.Network(study.network.bandwidth, study.network.latency, study.network.topology)


class _Setup:
  """The least-squares problem, the workers' data, and the times per gradient and message."""

  def __init__(self, study, seed: int, num_workers: int, replicated: bool = False):
    p = study.problem
    self.problem = dp.least_squares_problem(p.num_examples, p.dim, p.noise, seed, p.condition_number)
    self.m = num_workers
    split = dp.replicate_data if replicated else dp.shard_data
    self.shards = split(self.problem.x, self.problem.y, self.m)
    network = _network(study)
    examples = p.num_examples if replicated else math.ceil(p.num_examples / self.m)
    self.seconds_per_gradient = float(systems.least_squares_gradient_flops(examples, p.dim) / study.flops_per_second)
    self.message = float(systems.message_seconds(4 * p.dim, network))
    self.sync_comm = float(systems.sync_communication_seconds(4 * p.dim, self.m, network))
    x64 = np.asarray(self.problem.x, np.float64)
    hessian = jnp.asarray(x64.T @ x64 / x64.shape[0], jnp.float32)
    w_star = jnp.asarray(self.problem.w_star, jnp.float32)
    self.eval_fn = lambda w: 0.5 * (w - w_star) @ hessian @ (w - w_star)

  def gap(self, gaps) -> list:
    return [max(float(v), 1e-30) for v in np.asarray(gaps)]


def _evaluate_params(eval_fn):
  return lambda state: eval_fn(state.params)


def _sync_curve(setup: _Setup, iterations: int, compute, lr: float) -> dict:
  algorithm = dp.data_parallel_gd(dp.least_squares_loss, lr)
  zeros = jnp.zeros(setup.problem.x.shape[1])
  _, (_, gaps) = engine.scan_rounds(algorithm, engine.every_client_sampler(setup.shards), algorithm.init(zeros),
                                    jax.random.key(0), iterations, evaluate=(1, _evaluate_params(setup.eval_fn)))
  timeline = systems.sync_timeline(compute[:iterations], setup.sync_comm)
  return {'gradients': list(range(0, setup.m * (iterations + 1), setup.m)),
          'time': [0.0] + timeline.end.tolist(), 'loss_gap': setup.gap(np.append(setup.eval_fn(zeros), gaps))}


def _async_curve(setup: _Setup, config: ap.AsyncConfig, compute) -> dict:
  num_arrivals = compute.shape[0]
  schedule = ap.async_schedule(compute, num_arrivals, setup.message, config.staleness_bound, config.buffer_size)
  result = ap.simulate(dp.least_squares_loss, jnp.zeros(setup.problem.x.shape[1]), setup.shards, config,
                       schedule, eval_fn=setup.eval_fn, eval_every=setup.m)
  ends = np.arange(setup.m, num_arrivals + 1, setup.m)
  initial = float(setup.eval_fn(jnp.zeros(setup.problem.x.shape[1])))
  return {'gradients': [0] + ends.tolist(), 'time': [0.0] + schedule.arrival_time[ends - 1].tolist(),
          'loss_gap': setup.gap(np.append(initial, result.eval_loss)),
          'max_staleness': int(schedule.staleness.max()), 'mean_staleness': float(schedule.staleness.mean())}


def _slow_worker_curves(study, seed: int, replicated: bool) -> dict:
  c = study.slow_worker
  setup = _Setup(study, seed, c.num_workers, replicated=replicated)
  m, lipschitz, iterations = setup.m, setup.problem.lipschitz, c.iterations
  jitter = systems.sample_slowdowns(systems.StragglerModel('exponential', scale=c.jitter), m * iterations, m, seed)
  clean = setup.seconds_per_gradient * jitter
  slow = clean * systems.sample_slowdowns(systems.fixed(1, c.factor), m * iterations, m, seed)
  lr = c.lr_scale / (m * lipschitz)
  damped_lr = m * lr  # a typical arrival (tau ~ m - 1) moves about as far as plain async; a very stale one barely
  return {
      'sync': _sync_curve(setup, iterations, slow[:iterations], 1.0 / lipschitz),
      'async, no slow worker': _async_curve(setup, ap.async_sgd(m, lr), clean),
      'async': _async_curve(setup, ap.async_sgd(m, lr), slow),
      'async, lr/(1+tau)': _async_curve(setup, ap.damped_async_sgd(m, damped_lr, 'inverse'), slow),
      f'SSP, s={c.staleness_bound}': _async_curve(setup, ap.stale_synchronous(m, lr, c.staleness_bound), slow),
      f'FedBuff, K={study.fedbuff_k}': _async_curve(setup, ap.fedbuff(m, study.fedbuff_k * lr, study.fedbuff_k), slow),
  }


def async_slow_worker(config, workdir: str) -> dict:
  """Worker 0 `factor` times slower (all jittered), with sharded and with replicated data.

  Sharded: async under-weights the slow worker's shard and its gradients are very stale. Replicated:
  staleness is the only effect. Every curve runs through `engine.scan_rounds` (async via
  `async_ps.simulate`); the curves share the same compute draws, so they are one task, not a sweep.
  """
  del workdir
  study, c = config.study, config.study.slow_worker
  panels = {'sharded': _slow_worker_curves(study, config.seed, False),
            'replicated': _slow_worker_curves(study, config.seed, True)}
  return {'num_workers': c.num_workers, 'factor': c.factor, 'lr_scale': c.lr_scale, 'panels': panels,
          'headline': {'sharded_async_final_gap': panels['sharded']['async']['loss_gap'][-1],
                       'sharded_sync_final_gap': panels['sharded']['sync']['loss_gap'][-1]}}


def _segments_json(segments: systems.Segments) -> dict:
  return {'worker': segments.worker.tolist(), 'start': segments.start.tolist(), 'end': segments.end.tolist(),
          'kind': [systems.KINDS[k] for k in segments.kind]}


def async_timeline(config, workdir: str) -> dict:
  """Gantt intervals of sync, async and SSP on the same compute draws."""
  del workdir
  study, c = config.study, config.study.timeline
  setup = _Setup(study, config.seed, c.num_workers)
  stragglers = systems.bernoulli(c.straggler_probability, study.straggler_factor)
  compute = ap.draw_compute_seconds(c.num_workers * c.iterations * 4, c.num_workers, setup.seconds_per_gradient,
                                    stragglers, config.seed)
  sync = systems.sync_timeline(compute[:c.iterations], setup.sync_comm)
  horizon = float(sync.end[-1])
  out = {'num_workers': c.num_workers, 'horizon': horizon,
         'panels': {'sync': _segments_json(systems.sync_segments(sync))}}
  for name, bound in (('async', None), ('SSP, s=1', 1)):
    schedule = ap.async_schedule(compute, compute.shape[0], setup.message, staleness_bound=bound)
    keep = schedule.segments.start < horizon
    segments = systems.Segments(*(a[keep] for a in schedule.segments))
    segments = segments._replace(end=np.minimum(segments.end, horizon))
    out['panels'][name] = _segments_json(segments)
    out['panels'][name]['gradients'] = int(np.sum(schedule.arrival_time <= horizon))
  out['panels']['sync']['gradients'] = c.num_workers * c.iterations
  out['headline'] = {name: panel['gradients'] for name, panel in out['panels'].items()}
  return out


def async_staleness(config, workdir: str) -> dict:
  """Histogram of staleness (versions) for async SGD under several straggler models."""
  del workdir
  study, c = config.study, config.study.staleness
  m, factor = study.num_workers, study.straggler_factor
  settings = {
      'equal speeds': (systems.StragglerModel(), None),
      f'exponential (scale {c.exponential_scale:g})': (
          systems.StragglerModel('exponential', scale=c.exponential_scale), None),
      f'log-normal (sigma {c.lognormal_scale:g})': (systems.StragglerModel('lognormal', scale=c.lognormal_scale), None),
      f'one worker {factor:g}x slower': (systems.fixed(1, factor), None),
      f'one worker {factor:g}x slower, SSP s=1': (systems.fixed(1, factor), 1),
  }
  out = {'num_workers': m, 'histograms': {}}
  for name, (stragglers, bound) in settings.items():
    compute = ap.draw_compute_seconds(c.num_arrivals, m, 1.0, stragglers, config.seed)
    schedule = ap.async_schedule(compute, c.num_arrivals, 0.0, staleness_bound=bound)
    out['histograms'][name] = {'counts': np.bincount(schedule.staleness).tolist(),
                               'mean': float(schedule.staleness.mean()), 'max': int(schedule.staleness.max())}
  out['headline'] = {name: h['mean'] for name, h in out['histograms'].items()}
  return out


def ray_parameter_server(config, workdir: str) -> dict:
  """Measured wall-clock of the Ray parameter server (sync vs async, with and without a slow worker),
  next to the simulator's prediction from the same injected delays."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import ray  # pylint: disable=g-import-not-at-top
  from fedjax_lab.runtime import ray_ps  # pylint: disable=g-import-not-at-top
  del workdir
  study, c = config.study, config.study.ray
  m = c.num_workers
  setup = _Setup(study, config.seed, m)
  lr_async, lr_sync = study.async_lr_scale / (m * setup.problem.lipschitz), 1.0 / setup.problem.lipschitz
  started_here = not ray.is_initialized()
  if started_here:
    os.environ.setdefault('RAY_AUTH_MODE', 'disabled')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp())
  out = {'num_workers': m, 'delay_seconds': c.delay, 'runs': {}}
  try:
    with ray_ps.ParameterServerPool() as pool:
      for slow in (1.0, c.slow_factor):
        delays = np.full(m, c.delay)
        delays[0] *= slow
        for mode in ('sync', 'async'):
          rounds = c.num_updates // m if mode == 'sync' else c.num_updates
          result = pool.run(dp.least_squares_loss, jnp.zeros(setup.problem.x.shape[1]), setup.shards,
                            lr_sync if mode == 'sync' else lr_async, rounds, mode=mode, delays=delays,
                            timeout_s=600)
          if mode == 'sync':
            predicted = rounds * delays.max()
          else:
            predicted = ap.async_schedule(np.tile(delays, (c.num_updates, 1)), c.num_updates).wall_clock
          out['runs'][f'{mode}, worker 0 {slow:g}x'] = {
              'gradients': int(result.worker.shape[0]), 'server_steps': result.num_updates,
              'measured_seconds': result.wall_clock, 'simulated_seconds': float(predicted),
              'loss_gap': float(setup.eval_fn(jnp.asarray(result.params))),
              'max_staleness': int(result.staleness.max())}
  finally:
    if started_here:
      ray.shutdown()
  out['headline'] = {name: run['measured_seconds'] for name, run in out['runs'].items()}
  return out


def _cpu_name() -> str:
  if jax.default_backend() == 'cpu':
    try:
      with open('/proc/cpuinfo') as f:
        for line in f:
          if line.startswith('model name'):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
      pass
  return jax.devices()[0].device_kind


def speedup_model(config, workdir: str) -> dict:
  """Modelled speedup vs m: least squares from its FLOP model, the MLP on digits from the measured time
  of one worker's jitted gradient on n/m examples, for each network and topology (with and without
  stragglers). The exact-GD check (iterates independent of m) is the config's data_parallel_gd runs."""
  del workdir
  study = config.study
  m = np.asarray(study.num_workers)
  ls = study.least_squares
  serial = float(systems.least_squares_gradient_flops(ls.num_examples, ls.dim) / ls.flops_per_second)
  ls_worker = systems.least_squares_gradient_flops(np.ceil(ls.num_examples / m), ls.dim) / ls.flops_per_second
  stragglers = systems.StragglerModel(study.stragglers.distribution, scale=study.stragglers.scale)

  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  bunch = load_digits()
  x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int32)
  model = models.get_model('mlp', (x.shape[1],), 10, hidden=tuple(study.mlp.hidden))
  params = jax.jit(model.init)(jax.random.key(config.seed))
  grad_fn = jax.jit(jax.value_and_grad(functools.partial(models.batch_loss, model)))
  batches = [(x[:math.ceil(len(y) / k)], y[:math.ceil(len(y) / k)]) for k in m]
  mlp_worker = np.array(systems.interleaved_min_seconds([(grad_fn, (params, *b)) for b in batches],
                                                         study.mlp.repeats))
  tasks = {'least_squares': (serial, ls_worker, 4 * ls.dim),
           'mlp': (float(mlp_worker[0]), mlp_worker, 4 * models.num_params(params))}
  out = {'num_workers': m.tolist(), 'device': _cpu_name(), 'tasks': {}}
  for task, (serial_seconds, worker_seconds, num_bytes) in tasks.items():
    curves = {}
    for label, bandwidth, latency in study.networks:
      for topology in study.topologies:
        network = systems.Network(bandwidth, latency, topology)
        for with_stragglers in (False, True):
          curve = systems.sync_speedup(m, serial_seconds, num_bytes, network, worker_seconds,
                                       stragglers if with_stragglers else systems.StragglerModel(),
                                       study.straggler_iterations if with_stragglers else 1, config.seed)
          key = f'{label} | {topology}' + (' | stragglers' if with_stragglers else '')
          curves[key] = {f: np.asarray(getattr(curve, f)).tolist() for f in curve._fields}
    out['tasks'][task] = {'serial_seconds': serial_seconds, 'worker_seconds': np.asarray(worker_seconds).tolist(),
                          'num_bytes': int(num_bytes), 'curves': curves}
  first = out['tasks']['least_squares']['curves']
  out['headline'] = {'least_squares_speedup_at_max_m': first[next(iter(first))]['speedup'][-1]}
  return out
