r"""Sync vs async parallel gradient descent: runs the studies and writes the JSON the figures read.

  python -m experiments.sync_async --config=configs/sync_async.py --workdir=runs/sync_async
  python -m experiments.sync_async --config=configs/speedup.py --workdir=runs/sync_async
  python -m experiments.sync_async --config=configs/sync_async.py:smoke --workdir=/tmp/x --studies=loss

Studies (one JSON file each, `WORKDIR/sync_async_<study>.json`):
  loss         sync vs async (and FedBuff) loss gap vs gradients and vs simulated wall-clock, for
               each straggler probability.
  slow_worker  one very slow worker: plain async with an aggressive step vs staleness damping,
               bounded staleness (SSP) and FedBuff, with sync for reference.
  timeline     per-worker compute / wait / communication intervals for sync, async and SSP.
  staleness    staleness histograms of async SGD under several straggler models.
  ray          measured wall-clock of the Ray parameter server (sync vs async, with a slow
               worker) next to the simulator's prediction for the same injected delays.
  speedup      modelled speedup vs m (least squares: FLOP model; MLP on digits: measured compute)
               for several networks and both topologies, plus the exact-GD check for every m.
`run_study(config, workdir)` is the library entry point (the tests and figure scripts call it).
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_lab import engine
from fedjax_lab import systems
from fedjax_lab.algorithms import async_ps as ap
from fedjax_lab.algorithms import data_parallel as dp
from fedjax_lab.models import models

SYNC_ASYNC_STUDIES = ('loss', 'slow_worker', 'timeline', 'staleness', 'ray')
SPEEDUP_STUDIES = ('speedup',)


def _network(config) -> systems.Network:
  return systems.Network(config.network.bandwidth, config.network.latency, config.network.topology)


class _Setup:
  """Everything the least-squares studies share: problem, shards, times per gradient and message."""

  def __init__(self, config, num_workers: int | None = None, replicated: bool = False,
               condition_number: float | None = None):
    p = config.problem
    self.problem = dp.least_squares_problem(p.num_examples, p.dim, p.noise, config.seed,
                                            condition_number or p.condition_number)
    self.m = num_workers or config.num_workers
    split = dp.replicate_data if replicated else dp.shard_data
    self.shards = split(self.problem.x, self.problem.y, self.m)
    self.network = _network(config)
    examples = p.num_examples if replicated else math.ceil(p.num_examples / self.m)
    self.seconds_per_gradient = float(systems.least_squares_gradient_flops(examples, p.dim) / config.flops_per_second)
    num_bytes = 4 * p.dim
    self.message = float(systems.message_seconds(num_bytes, self.network))
    self.sync_comm = float(systems.sync_communication_seconds(num_bytes, self.m, self.network))
    # f(w) - f* = 1/2 (w - w*)^T H (w - w*) exactly for least squares; evaluating it this way avoids
    # the float32 cancellation of f(w) - f* near the optimum.
    x64 = np.asarray(self.problem.x, np.float64)
    hessian = jnp.asarray(x64.T @ x64 / x64.shape[0], jnp.float32)
    w_star = jnp.asarray(self.problem.w_star, jnp.float32)
    self.eval_fn = lambda w: 0.5 * (w - w_star) @ hessian @ (w - w_star)
    self.evaluate_state = lambda state: self.eval_fn(state.params)

  def gap(self, gaps) -> list:
    return [max(float(v), 1e-30) for v in np.asarray(gaps)]


def _sync_curve(setup: _Setup, iterations: int, compute, lr: float) -> dict:
  """Loss gap after every iteration, and when it ended, for compute seconds [T, m]."""
  algorithm = dp.data_parallel_gd(dp.least_squares_loss, lr)

  zeros = jnp.zeros(setup.problem.x.shape[1])
  _, (_, gaps) = engine.scan_rounds(algorithm, engine.every_client_sampler(setup.shards), algorithm.init(zeros),
                                    jax.random.key(0), iterations, evaluate=(1, setup.evaluate_state))
  losses = np.append(setup.eval_fn(zeros), gaps)
  timeline = systems.sync_timeline(compute[:iterations], setup.sync_comm)
  return {'gradients': list(range(0, setup.m * (iterations + 1), setup.m)),
          'time': [0.0] + timeline.end.tolist(), 'loss_gap': setup.gap(losses)}


def _async_curve(setup: _Setup, config: ap.AsyncConfig, compute) -> dict:
  """Loss gap after every m arrivals, and when they happened, for compute times [U, m]."""
  num_arrivals = compute.shape[0]
  schedule = ap.async_schedule(compute, num_arrivals, setup.message, config.staleness_bound, config.buffer_size)
  result = ap.simulate(dp.least_squares_loss, jnp.zeros(setup.problem.x.shape[1]), setup.shards, config,
                       schedule, eval_fn=setup.eval_fn, eval_every=setup.m)
  ends = np.arange(setup.m, num_arrivals + 1, setup.m)
  initial = float(setup.eval_fn(jnp.zeros(setup.problem.x.shape[1])))
  return {'gradients': [0] + ends.tolist(), 'time': [0.0] + schedule.arrival_time[ends - 1].tolist(),
          'loss_gap': setup.gap(np.append(initial, result.eval_loss)),
          'max_staleness': int(schedule.staleness.max()), 'mean_staleness': float(schedule.staleness.mean())}


def loss_study(config) -> dict:
  """Loss gap vs gradients and wall-clock: sync, async, FedBuff for each straggler probability."""
  setup = _Setup(config)
  lipschitz, m, iterations = setup.problem.lipschitz, setup.m, config.sync_iterations
  async_lr = config.async_lr_scale / (m * lipschitz)
  out = {'num_workers': m, 'loss_star': setup.problem.loss_star, 'panels': {}}
  for probability in config.straggler_probabilities:
    stragglers = systems.bernoulli(probability, config.straggler_factor)
    # The same draws for every method: sync uses the first T rows, async one row per gradient.
    compute = ap.draw_compute_seconds(m * iterations, m, setup.seconds_per_gradient, stragglers, config.seed)
    out['panels'][f'{probability:g}'] = {
        'sync': _sync_curve(setup, iterations, compute[:iterations], 1.0 / lipschitz),
        'async': _async_curve(setup, ap.async_sgd(m, async_lr), compute),
        f'FedBuff, K={config.fedbuff_k}': _async_curve(
            setup, ap.fedbuff(m, config.fedbuff_k * async_lr, config.fedbuff_k), compute),
    }
  return out


def _slow_worker_curves(config, replicated: bool) -> dict:
  c = config.slow_worker
  setup = _Setup(config, c.num_workers, replicated=replicated)
  m, lipschitz, iterations = setup.m, setup.problem.lipschitz, c.iterations
  jitter = systems.sample_slowdowns(systems.StragglerModel('exponential', scale=c.jitter), m * iterations, m,
                                    config.seed)
  clean = setup.seconds_per_gradient * jitter
  slow = clean * systems.sample_slowdowns(systems.fixed(1, c.factor), m * iterations, m, config.seed)
  lr = c.lr_scale / (m * lipschitz)
  # Damped: a typical arrival (tau ~ m - 1) moves about as far as plain async; a very stale one barely.
  damped_lr = m * lr
  return {
      'sync': _sync_curve(setup, iterations, slow[:iterations], 1.0 / lipschitz),
      'async, no slow worker': _async_curve(setup, ap.async_sgd(m, lr), clean),
      'async': _async_curve(setup, ap.async_sgd(m, lr), slow),
      'async, lr/(1+tau)': _async_curve(setup, ap.damped_async_sgd(m, damped_lr, 'inverse'), slow),
      f'SSP, s={c.staleness_bound}': _async_curve(setup, ap.stale_synchronous(m, lr, c.staleness_bound), slow),
      f'FedBuff, K={config.fedbuff_k}': _async_curve(
          setup, ap.fedbuff(m, config.fedbuff_k * lr, config.fedbuff_k), slow),
  }


def slow_worker_study(config) -> dict:
  """Worker 0 `factor` times slower (all workers jittered), with sharded and with replicated data.

  Sharded: async under-weights the slow worker's shard (it pushes 1/factor as often) and its
  gradients are very stale. Replicated (every worker computes the full gradient): staleness is the
  only effect, seen as a jolt whenever the slow worker's gradient lands.
  """
  c = config.slow_worker
  return {'num_workers': c.num_workers, 'factor': c.factor, 'lr_scale': c.lr_scale,
          'panels': {'sharded': _slow_worker_curves(config, False), 'replicated': _slow_worker_curves(config, True)}}


def _segments_json(segments: systems.Segments) -> dict:
  return {'worker': segments.worker.tolist(), 'start': segments.start.tolist(), 'end': segments.end.tolist(),
          'kind': [systems.KINDS[k] for k in segments.kind]}


def timeline_study(config) -> dict:
  """Gantt intervals of sync, async and SSP on the same compute draws."""
  c = config.timeline
  setup = _Setup(config, c.num_workers)
  stragglers = systems.bernoulli(c.straggler_probability, config.straggler_factor)
  compute = ap.draw_compute_seconds(c.num_workers * c.iterations * 4, c.num_workers, setup.seconds_per_gradient,
                                    stragglers, config.seed)
  sync = systems.sync_timeline(compute[:c.iterations], setup.sync_comm)
  horizon = float(sync.end[-1])
  out = {'num_workers': c.num_workers, 'horizon': horizon, 'panels': {'sync': _segments_json(systems.sync_segments(sync))}}
  for name, bound in (('async', None), ('SSP, s=1', 1)):
    schedule = ap.async_schedule(compute, compute.shape[0], setup.message, staleness_bound=bound)
    keep = schedule.segments.start < horizon
    segments = systems.Segments(*(a[keep] for a in schedule.segments))
    segments = segments._replace(end=np.minimum(segments.end, horizon))
    out['panels'][name] = _segments_json(segments)
    out['panels'][name]['gradients'] = int(np.sum(schedule.arrival_time <= horizon))
  out['panels']['sync']['gradients'] = c.num_workers * c.iterations
  return out


def staleness_study(config) -> dict:
  """Histogram of staleness (versions) for async SGD under several straggler models."""
  c = config.staleness
  m, factor = config.num_workers, config.straggler_factor
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
  return out


def _digits():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  bunch = load_digits()
  return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int32)


def _cpu_name() -> str:
  """The CPU model from /proc/cpuinfo (the device kind when not on a CPU or not on Linux)."""
  if jax.default_backend() == 'cpu':
    try:
      with open('/proc/cpuinfo') as f:
        for line in f:
          if line.startswith('model name'):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
      pass
  return jax.devices()[0].device_kind


def speedup_study(config) -> dict:
  """Speedup curves (least squares: FLOPs; MLP on digits: measured) and the exact-GD check."""
  m = np.asarray(config.num_workers)
  ls = config.least_squares
  serial = float(systems.least_squares_gradient_flops(ls.num_examples, ls.dim) / ls.flops_per_second)
  ls_worker = systems.least_squares_gradient_flops(np.ceil(ls.num_examples / m), ls.dim) / ls.flops_per_second
  stragglers = systems.StragglerModel(config.stragglers.distribution, scale=config.stragglers.scale)

  x, y = _digits()
  model = models.get_model('mlp', (x.shape[1],), 10, hidden=tuple(config.mlp.hidden))
  params = jax.jit(model.init)(jax.random.key(config.seed))
  loss_fn = functools.partial(models.batch_loss, model)
  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  batches = [(x[:math.ceil(len(y) / k)], y[:math.ceil(len(y) / k)]) for k in m]
  mlp_worker = np.array(systems.interleaved_min_seconds([(grad_fn, (params, *b)) for b in batches],
                                                         config.mlp.repeats))
  mlp_bytes = 4 * models.num_params(params)

  tasks = {'least_squares': (serial, ls_worker, 4 * ls.dim), 'mlp': (float(mlp_worker[0]), mlp_worker, mlp_bytes)}
  out = {'num_workers': m.tolist(), 'device': _cpu_name(), 'tasks': {}}
  for task, (serial_seconds, worker_seconds, num_bytes) in tasks.items():
    curves = {}
    for label, bandwidth, latency in config.networks:
      for topology in config.topologies:
        network = systems.Network(bandwidth, latency, topology)
        for with_stragglers in (False, True):
          curve = systems.sync_speedup(m, serial_seconds, num_bytes, network, worker_seconds,
                                       stragglers if with_stragglers else systems.StragglerModel(),
                                       config.straggler_iterations if with_stragglers else 1, config.seed)
          key = f'{label} | {topology}' + (' | stragglers' if with_stragglers else '')
          curves[key] = {f: np.asarray(getattr(curve, f)).tolist() for f in curve._fields}
    out['tasks'][task] = {'serial_seconds': serial_seconds, 'worker_seconds': np.asarray(worker_seconds).tolist(),
                          'num_bytes': int(num_bytes), 'curves': curves}

  # Exact GD: data-parallel iterates do not depend on m (up to float32 summation order).
  losses = {}
  for k in m:
    algorithm = dp.data_parallel_gd(loss_fn, config.mlp.learning_rate)
    _, metrics = engine.scan_rounds(algorithm, engine.every_client_sampler(dp.shard_data(x, y, int(k))),
                                    algorithm.init(params), jax.random.key(0), config.mlp.gd_iterations)
    losses[int(k)] = np.asarray(metrics['train_loss']).tolist()
  reference = np.asarray(losses[int(m[0])])
  out['mlp_gd'] = {'loss': losses, 'max_abs_difference': float(max(np.max(np.abs(np.asarray(v) - reference))
                                                                   for v in losses.values()))}
  return out


def ray_study(config) -> dict:
  """Measured wall-clock of the Ray parameter server (sync vs async, with and without a slow worker),
  next to the simulator's prediction from the same injected delays."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import ray  # pylint: disable=g-import-not-at-top
  from fedjax_lab.runtime import ray_ps  # pylint: disable=g-import-not-at-top
  c = config.ray
  m = c.num_workers
  setup = _Setup(config, m)
  lr_async, lr_sync = config.async_lr_scale / (m * setup.problem.lipschitz), 1.0 / setup.problem.lipschitz
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
  return out


STUDIES = {'loss': loss_study, 'slow_worker': slow_worker_study, 'timeline': timeline_study,
           'staleness': staleness_study, 'speedup': speedup_study, 'ray': ray_study}


def study_path(workdir: str, study: str) -> str:
  return os.path.join(workdir, f'sync_async_{study}.json')


def run_study(config: ml_collections.ConfigDict, workdir: str, studies=None) -> dict[str, str]:
  """Runs the studies a config defines (or `studies`) and writes one JSON each; returns the paths."""
  default = SPEEDUP_STUDIES if config.name == 'speedup' else SYNC_ASYNC_STUDIES
  studies = tuple(studies or default)
  unknown = [s for s in studies if s not in default]
  if unknown:
    raise ValueError(f'studies={unknown} do not belong to config {config.name!r}; choose from {default}.')
  os.makedirs(workdir, exist_ok=True)
  paths = {}
  for study in studies:
    result = STUDIES[study](config)
    result['config'] = config.to_dict()
    paths[study] = study_path(workdir, study)
    with open(paths[study], 'w') as f:
      json.dump(result, f, default=_jsonable)
  return paths


def _jsonable(value: Any):
  if isinstance(value, (np.integer, np.floating)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, tuple):
    return list(value)
  raise TypeError(f'Cannot write {type(value)} to JSON.')


def load_or_run(study: str, workdir: str, smoke: bool = False, rerun: bool = False) -> dict:
  """The figure scripts' entry: reads WORKDIR/sync_async_<study>.json, running the study if missing."""
  path = study_path(workdir, study)
  if rerun or not os.path.exists(path):
    module = 'speedup' if study in SPEEDUP_STUDIES else 'sync_async'
    config = _load_config(module, 'smoke' if smoke else '')
    run_study(config, workdir, [study])
  with open(path) as f:
    return json.load(f)


def _load_config(name: str, arg: str):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f'configs.{name}').get_config(arg)


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise ValueError(f'Unexpected arguments: {argv[1:]}')
  paths = run_study(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.studies or None)
  for study, path in paths.items():
    print(f'{study}: {path}')


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'configs/sync_async.py[:smoke] or configs/speedup.py[:smoke].')
  flags.DEFINE_string('workdir', 'runs/sync_async', 'Folder for the JSON files.')
  flags.DEFINE_list('studies', [], 'Subset of studies to run (default: all of the config).')
  flags.mark_flags_as_required(['config'])
  app.run(main)


# ----------------------------------------------------------------------------- figure helpers

def figure_args(description: str, argv=None):
  """--outdir, --workdir, --smoke, --rerun: the flags every sync/async figure script takes."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--outdir', default='figures_out', help='where the PNG and PDF go')
  parser.add_argument('--workdir', default='runs/sync_async', help='where the study JSON is read or written')
  parser.add_argument('--smoke', action='store_true', help='tiny config (for tests)')
  parser.add_argument('--rerun', action='store_true', help='run the study even if its JSON exists')
  return parser.parse_args(argv)


def save_figure(fig, outdir: str, name: str) -> list[str]:
  """Writes outdir/name.png (150 dpi) and outdir/name.pdf; returns the paths."""
  os.makedirs(outdir, exist_ok=True)
  paths = [os.path.join(outdir, f'{name}.{ext}') for ext in ('png', 'pdf')]
  for path in paths:
    fig.savefig(path, dpi=150, bbox_inches='tight')
  return paths


COLORS = {'sync': 'black', 'async': 'tab:red', 'async, no slow worker': 'tab:gray', 'async, lr/(1+tau)': 'tab:blue',
          'SSP': 'tab:green', 'FedBuff': 'tab:purple'}


def method_color(name: str) -> str:
  for key in sorted(COLORS, key=len, reverse=True):
    if name.startswith(key):
      return COLORS[key]
  return 'tab:orange'
