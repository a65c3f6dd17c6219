"""`run(config, workdir)`: the library function behind experiments/run.py, tests and notebooks.

A run is compiled once per block length: `eval_every` rounds (sampling included) are one call of
`fedjax_lab.engine.scan_rounds`, the package's one round loop, so there is no host round-trip per
round. The algorithm declares which inputs it consumes (`Algorithm.inputs`: a sampled cohort, or every
client in order) and what the test set evaluates (`Algorithm.evaluates`: the global model, or the
node average and every node). Between blocks the
runner evaluates on the test set, appends a row to metrics.jsonl, checks for divergence and
saves a checkpoint. Restarting with the same workdir resumes from the latest checkpoint; the
random stream of round r is `fold_in(seed_key, r)`, so a resumed run equals an uninterrupted one.

`config.data_placement` says where the training clients live:
  'device'  (default) all of them on the device(s); a block of rounds is one scan, as above. On a
            mesh the population is 'replicated' while a copy per device fits in
            REPLICATE_MEMORY_FRACTION of the machine's memory, else 'split' (for an algorithm that
            reads each client's rows by id; any other one always gets a copy per device).
  'replicated'  a whole copy on every device: no fetches (the faster of the two on a 2-device CPU
            mesh: 0.057 vs 0.062 s/round at C = 100, 0.58 vs 0.61 at C = 1000, WORKSPACE.md "Every
            core"), D times the memory.
  'split'   split over the devices (`placement.shard_rows`: one copy in all, K / D clients per
            device); each device fetches its clients' rows from their owners in bounded blocks.
            Needs an algorithm with `lazy_inputs` (FedAvg's streaming round). The three device
            placements give the same numbers bit for bit.
  'host'    they stay in host memory (numpy or memmap, see `fedjax_lab.data.host`); each round's
            cohort is drawn with the same key (hence the same clients), gathered on the host and
            transferred by a background thread while the previous round computes, and one jitted
            round step runs per round. Evaluation, metrics, checkpoints and resume are unchanged.

`config.sampling` says how cohorts are drawn ('fixed_size' or 'poisson', `fedjax_lab.data.sampling`);
both placements call the same `sample_cohort`. Under 'poisson' every round's arrays have
`summary['cohort_size']` slots and the metric `participants` is the realised number of members.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import tqdm

from fedjax_lab import engine
from fedjax_lab.algorithms import base as algorithm_base
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import host as host_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData, SplitFederatedData
from fedjax_lab.models import models as models_lib
from fedjax_lab.runner import builders
from fedjax_lab.runner import metrics_io
from fedjax_lab.runner import workdir as workdir_lib
from fedjax_lab.runner import evaluation as evaluation_lib
from fedjax_lab.runner import simulated
from fedjax_lab.runner import sweep as sweep_lib
from fedjax_lab.runner import tasks as tasks_lib
from fedjax_lab.runner.checkpoint import Checkpointer
from fedjax_lab.runner.metrics_io import MetricsWriter
from fedjax_lab.runtime import devices

# A run whose first rounds (this many, or all of them if fewer) had no participant at all stops.
EMPTY_ROUNDS_BEFORE_REFUSING = 10
DEFAULT_MAX_EMPTY_ROUND_FRACTION = 0.5


class RunDivergedError(FloatingPointError):
  """Raised when a training or evaluation metric stops being finite."""


class NoParticipantsError(RuntimeError):
  """Raised when every round so far had no client report: nothing was trained."""


class RunInterrupted(Exception):
  """Raised after a requested stop (SIGTERM/SIGINT in experiments.run) once the checkpoint is saved."""

  def __init__(self, message: str, round_index: int):
    super().__init__(message)
    self.round_index = round_index


def evaluate_batched(model: models_lib.Model, params, x, y, batch_size: int = 1024, mesh=None) -> dict:
  """Test metrics over a whole centralized set x [N, ...], y [N], in padded batches under lax.map.

  With a client mesh each batch is split over its devices (each evaluates batch_size / devices
  examples; the sums are all-reduced) instead of every device evaluating the whole set.
  """
  n = x.shape[0]
  devices = placement_lib.num_mesh_clients(mesh)
  batch_size = -(-min(batch_size, n) // devices) * devices
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  xb = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape((num_batches, batch_size) + x.shape[1:])
  yb = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1)).reshape((num_batches, batch_size) + y.shape[1:])
  mb = (jnp.arange(num_batches * batch_size) < n).reshape(num_batches, batch_size)
  if devices > 1:
    split = lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P(None, placement_lib.CLIENT_AXIS)))
    xb, yb, mb = split(xb), split(yb), split(mb)

  def one(batch):
    xs, ys, ms = batch
    outputs = model.apply(params, xs)
    sums = {'loss': jnp.sum(model.loss(outputs, ys) * ms)}
    for name, fn in model.metrics.items():
      sums[name] = jnp.sum(fn(outputs, ys) * ms)
    return sums

  totals = jax.tree.map(lambda s: jnp.sum(s, axis=0), jax.lax.map(one, (xb, yb, mb)))
  return jax.tree.map(lambda s: s / n, totals)


def evaluate_state(model: models_lib.Model, evaluates: str, state, x, y, mesh=None) -> dict:
  """Test metrics of the model(s) a state stands for, as the algorithm declares (`Algorithm.evaluates`).

  'global': state.params is one model. 'nodes': state.params has leaves [N, ...], one model per
  node; evaluated at the node average (the model the nodes agree on at consensus), and each node's
  own model too: `node_{metric}_mean` and `node_{metric}_worst` (the worst node: highest loss,
  lowest accuracy). `mesh`: split each test batch over its devices (`evaluate_batched`).
  """
  if evaluates == 'global':
    return evaluate_batched(model, state.params, x, y, mesh=mesh)
  if evaluates != 'nodes':
    raise ValueError(f'Algorithm.evaluates={evaluates!r} must be one of {algorithm_base.EVALUATES}.')
  average = jax.tree.map(lambda p: jnp.mean(p, axis=0), state.params)
  metrics = evaluate_batched(model, average, x, y, mesh=mesh)
  per_node = jax.vmap(lambda params: evaluate_batched(model, params, x, y, mesh=mesh))(state.params)
  for name, values in per_node.items():
    metrics[f'node_{name}_mean'] = jnp.mean(values)
    metrics[f'node_{name}_worst'] = jnp.max(values) if name == 'loss' else jnp.min(values)
  return metrics


def population_is_split(algorithm, mesh, data_placement: str, population_bytes: int) -> bool:
  """Whether the runner splits the training population over the mesh (see the module docstring).

  Raises ValueError for config.data_placement='split' with an algorithm that gathers its cohort.
  """
  reads_by_id = algorithm.inputs == 'cohort' and algorithm.lazy_inputs
  if data_placement == 'split' and not reads_by_id:
    raise ValueError(f"config.data_placement='split' needs an algorithm that reads each client's rows by id "
                     f"(FedAvg's streaming round); {algorithm.name!r} gathers its cohort (a stacked aggregator, a "
                     "data attack, SCAFFOLD, or not a cohort algorithm). Use 'device' or 'replicated'.")
  devices = placement_lib.num_mesh_clients(mesh)
  if devices == 1 or not reads_by_id or data_placement not in ('device', 'split'):
    return False
  if data_placement == 'split':
    return True
  split = devices * population_bytes > REPLICATE_MEMORY_FRACTION * usable_memory_bytes()
  logging.info("config.data_placement='device': the population (%.1f MiB) is %s over %d devices.",
               population_bytes / 2 ** 20, 'split' if split else 'replicated', devices)
  return split


def usable_memory_bytes() -> int:
  """The memory this process may use: the machine's, or a container's cgroup limit when lower."""
  memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  for limit_file in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):
    try:
      with open(limit_file) as f:
        limit = f.read().strip()
    except OSError:
      continue
    if limit.isdigit():
      memory = min(memory, int(limit))
  return memory


def make_sampler(algorithm, train: FederatedData, clients_per_round: int, dropout_rate: float, byzantine,
                 cohort_sampling: str, capacity: int, num_clients: int | None = None) -> engine.Sampler:
  """The sampler the algorithm declares (`Algorithm.inputs`) over device-resident training data.

  num_clients: K when `train` is padded with empty clients (a population split over devices)."""
  if algorithm.inputs == 'every_client':
    return engine.every_client_sampler(train)
  if algorithm.inputs == 'arrivals':  # a simulated schedule (fedjax_lab/runner/simulated.py)
    return simulated.arrival_sampler(algorithm, train)
  if algorithm.inputs == 'cohort':
    return engine.cohort_sampler(train, clients_per_round, dropout_rate, byzantine, cohort_sampling, capacity,
                                 gather=not algorithm.lazy_inputs, num_clients=num_clients)
  raise ValueError(f'Algorithm {algorithm.name!r} consumes {algorithm.inputs!r} inputs, which the runner cannot '
                   'draw from a federated data set.')


DATA_PLACEMENTS = ('device', 'replicated', 'split', 'host')
# config.data_placement='device' replicates the population over a mesh while all copies fit in this
# share of the machine's memory, and splits it beyond.
REPLICATE_MEMORY_FRACTION = 0.25


def validate_data_placement(data_placement: str, prefetch_depth: int = 1) -> None:
  """Raises ValueError naming config.data_placement or config.prefetch_depth."""
  if data_placement not in DATA_PLACEMENTS:
    raise ValueError(f'config.data_placement={data_placement!r} is not a data placement; choose one of '
                     f'{DATA_PLACEMENTS} (\'host\' keeps the training clients in host memory, \'replicated\' '
                     'puts a whole copy on every device, \'split\' 1/D of them on each).')
  if int(prefetch_depth) != prefetch_depth or prefetch_depth < 0:
    raise ValueError(f'config.prefetch_depth={prefetch_depth} must be an integer >= 0 (rounds prepared ahead '
                     'in host mode; 0 = no prefetch).')


def _check_finite(row: dict, keys=('train_loss', 'test_loss')) -> None:
  for key in keys:
    value = row.get(key)
    if value is not None and not np.isfinite(value):
      raise RunDivergedError(
          f'Run diverged at round {row["round"]}: {key} = {value}. Lower config.algorithm.client_lr '
          f'(or server_lr), add clipping, or check the data; the metrics up to here are in metrics.jsonl.')


def _reported(block_metrics: dict) -> np.ndarray:
  """[L] bool: rounds of a block in which at least one client reported (all True without 'participants')."""
  losses = np.asarray(block_metrics['train_loss'])
  if 'participants' not in block_metrics:
    return np.ones(losses.shape, bool)
  return np.asarray(block_metrics['participants']) > 0


def block_row(block_metrics: dict, totals: dict) -> dict:
  """A block's row: each metric's mean over its rounds, with train_* metrics averaged over the rounds
  in which a client reported (absent when none did), `empty_rounds` (rounds with no participant) and
  the running `{bytes_up,bytes_down,empty_rounds}_total`, which it adds to `totals` in place."""
  reported = _reported(block_metrics)
  row: dict[str, Any] = {}
  for key, values in block_metrics.items():
    values = np.asarray(values, np.float64)
    if key in ('bytes_up', 'bytes_down'):
      totals[key] = totals.get(key, 0.0) + float(values.sum())
      row[f'{key}_total'] = totals[key]
    if key.startswith('train_'):
      if reported.any():
        row[key] = float(values[reported].mean())
      continue
    # A clock (simulated time) or a counter reads at the block's end; the rest are block means.
    row[key] = float(values[-1]) if key in simulated.LAST_VALUE_METRICS else float(values.mean())
  row['empty_rounds'] = int((~reported).sum())
  totals['empty_rounds'] = int(totals.get('empty_rounds', 0)) + row['empty_rounds']
  row['empty_rounds_total'] = totals['empty_rounds']
  return row


def _write_json(path: str, payload: Any) -> None:
  if jax.process_index() != 0:  # in a multi-process run, process 0 writes the run's files
    return
  with open(path, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=True, default=str)


def run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
        stop: threading.Event | None = None) -> dict:
  """Trains as configured, writing config.json, metrics.jsonl/.csv, checkpoints/ and summary.json.

  The workdir belongs to one config (`fedjax_lab.runner.workdir`): a rerun with the same config
  resumes from the newest checkpoint that restores, or returns at once if the run is complete; a
  larger config.rounds continues training; another config is refused before anything is written.

  Args:
    config: see `fedjax_lab.runner.builders` for the fields (configs/*.py are complete examples).
    workdir: output folder; if it holds a checkpoint, the run resumes from it.
    overwrite: delete whatever the workdir holds and start afresh.
    stop: when set (e.g. by a signal handler), the run saves a checkpoint at the next block
      boundary and raises RunInterrupted.

  Returns:
    The summary dict (also written to workdir/summary.json); 'already_complete' says whether the
    workdir already held the finished run.

  Raises:
    ValueError: an impossible config (before anything is compiled); WorkdirConfigError (a
      ValueError): the workdir holds another config or more rounds.
    WorkdirLockedError: another process is running in the workdir.
    RunDivergedError: a loss became NaN or infinite (the message gives round and metric).
    NoParticipantsError: no client reported in any of the first rounds.
    RunInterrupted: `stop` was set; the checkpoint of the round reached is saved.
  """
  config = ml_collections.ConfigDict(config)
  devices.use_all_cores(config.get('num_devices', 0))  # before anything starts JAX; a no-op once it runs
  # Studies: a config listing runs (config.sweep), or an analysis that is not a training run (config.task).
  if config.get('sweep'):
    return sweep_lib.run_sweep(config, workdir, run)
  if config.get('task', 'train') != 'train':
    return tasks_lib.run_task(config, workdir)
  builders.validate_run_fields(config)
  data_placement = config.get('data_placement', 'device')
  validate_data_placement(data_placement, config.get('prefetch_depth', 1))
  workdir_lib.validate_run_fields(config)
  num_clients_hint = config.data.get('num_clients')
  if num_clients_hint is not None:
    sampling.validate_sampling(num_clients_hint, config.clients_per_round, config.get('dropout_rate', 0.0))
  builders.validate_cohort_sampling(config)
  placement_lib.validate_placement(config.get('placement', 'auto'), config.get('chunk_size') or None)
  if not overwrite:
    workdir_lib.check(config, workdir)  # reads only: a refused config leaves every file untouched

  dataset = builders.build_dataset(config)
  train = dataset.train
  builders.validate_run_config(config, train.num_clients)
  cohort_sampling = config.get('sampling', 'fixed_size')
  cohort_size = builders.cohort_size(config, train.num_clients)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  mesh = placement_lib.client_mesh(config.get('num_devices', 0))  # 0: every usable core / device
  algorithm = builders.build_algorithm(config, model, train, dataset.num_classes, mesh)
  split_population = population_is_split(algorithm, mesh, data_placement, sum(np.asarray(a).nbytes for a in train))

  writes = jax.process_index() == 0  # in a multi-process run, process 0 writes the run's files
  lock = workdir_lib.Lock(workdir) if writes else None
  try:
    if writes:
      if overwrite:
        workdir_lib.wipe(workdir)
      plan = workdir_lib.check(config, workdir)  # again, under the lock: another process may have written
      if plan.stored_config is None or plan.stored_config.get('rounds') != config.rounds:
        workdir_lib.write_config(config, workdir)  # (the ignored fields do not change results: not rewritten)
    else:
      os.makedirs(workdir, exist_ok=True)
    return _train(config, workdir, stop, dataset, model, mesh, algorithm, cohort_sampling, cohort_size,
                  data_placement, split_population, writes)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir, stop, dataset, model, mesh, algorithm, cohort_sampling, cohort_size, data_placement,
           split_population, writes) -> dict:
  """The body of `run` once the workdir is checked, locked and holds config.json."""
  train = dataset.train
  replicated = NamedSharding(mesh, P()) if mesh is not None else None
  put = lambda a: jax.device_put(np.asarray(a), replicated)
  host_data = data_placement == 'host'
  if host_data:
    data = None
  elif split_population:  # each device holds ceil(K / D) clients; padding clients are never sampled
    data = SplitFederatedData(*placement_lib.shard_rows(train, mesh))
  else:
    data = FederatedData(*(put(a) for a in train))
  test_x, test_y = put(dataset.test_x), put(dataset.test_y)
  attack = config.get('attack') or ml_collections.ConfigDict({'name': 'none'})
  byzantine = put(sampling.byzantine_mask(train.num_clients, attack.get('fraction', 0.0) if attack.get(
      'name', 'none') != 'none' else 0.0, seed=config.seed + 1))

  seed_key = jax.random.key(config.seed)
  init_key, base_key = jax.random.split(seed_key)
  state = algorithm.init(jax.tree.map(put, model.init(init_key)))
  # An init may hand one array to two leaves (async_ps's version and round, exact diffusion's x and
  # psi); the runner donates the state and XLA refuses to donate a buffer twice: each leaf gets its own.
  state = jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), state)
  checkpointer = Checkpointer(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  # Cumulative counters live in the checkpoint, not in metrics.jsonl (which may be lost or trimmed).
  totals = {'bytes_up': 0.0, 'bytes_down': 0.0, 'empty_rounds': 0}
  metrics_rows = metrics_io.read_jsonl(os.path.join(workdir, 'metrics.jsonl'), tolerate_damage=True)
  try:
    restored_round, state, restored_totals = checkpointer.restore_latest(
        like=state, prefer_at_most=metrics_rows[-1]['round'] if metrics_rows else None)
  except BaseException:
    checkpointer.close()
    raise
  totals.update(restored_totals)
  if restored_round is not None:
    logging.info('Resuming from the checkpoint of round %d in %s', restored_round, workdir)
  if replicated is not None:
    # Leaves made by init (the round counter, optimizer state) would otherwise sit on one device and
    # come back from the first block replicated: a new input sharding, so a second compilation.
    state = jax.device_put(state, replicated)
  start_round = int(state.round)
  rounds = config.rounds
  summary_path = os.path.join(workdir, workdir_lib.SUMMARY_FILE)
  if start_round == rounds and os.path.exists(summary_path):
    checkpointer.close()
    with open(summary_path) as f:
      summary = json.load(f)
    logging.info('%s already holds the finished %d-round run of this config; nothing to do.', workdir, rounds)
    summary.update(already_complete=True, params=state.params)
    return summary
  writer = MetricsWriter(workdir, start_round if start_round > 0 else None, enabled=writes, rows=metrics_rows)
  reporters = builders.build_reporters(config, train.num_clients)

  evaluate = jax.jit(lambda state: evaluate_state(model, algorithm.evaluates, state, test_x, test_y, mesh))
  extra_metrics = evaluation_lib.extra_metrics_fn(config, model, dataset, data, test_x, test_y, algorithm.evaluates)
  eval_every = config.get('eval_every', 1)
  max_empty_fraction = config.get('max_empty_round_fraction', DEFAULT_MAX_EMPTY_ROUND_FRACTION)

  def record(round_index: int, block_metrics: dict | None, seconds: float) -> dict:
    row: dict[str, Any] = {'round': round_index}
    if block_metrics is not None:
      row.update(block_row(block_metrics, totals))
    else:
      row.update({f'{k}_total': v for k, v in totals.items()})
    row.update({f'test_{k}': float(v) for k, v in evaluate(state).items()})
    if extra_metrics is not None:
      row.update({k: float(v) for k, v in extra_metrics(state).items()})
    for reporter in reporters:
      row.update(reporter(round_index))
    row['seconds'] = seconds
    writer.write(row)
    return row

  start_time = time.time()
  if start_round == 0:
    record(0, None, 0.0)
  progress = tqdm.tqdm(total=rounds, initial=start_round, desc=config.get('name', 'rounds'), unit='round',
                       disable=not config.get('progress', True))
  round_index = start_round
  saved_round = restored_round
  last_row: dict = writer.rows[-1] if writer.rows else {}
  checkpoint_every = config.get('checkpoint_every', eval_every)
  first_block_seconds = None
  warned_empty = False
  prefetcher = None
  try:
    if host_data:
      if algorithm.inputs != 'cohort':
        raise ValueError(f"config.data_placement='host' draws a cohort per round on the host; algorithm "
                         f"{algorithm.name!r} consumes {algorithm.inputs!r} inputs: use "
                         "config.data_placement='device'.")
      loader = host_lib.make_cohort_loader(train, config.clients_per_round, base_key, config.get('dropout_rate', 0.0),
                                           byzantine, host_lib.cohort_sharding(mesh, cohort_size),
                                           sampling=cohort_sampling, capacity=cohort_size)
      prefetcher = host_lib.Prefetcher(loader, range(start_round, rounds), depth=int(config.get('prefetch_depth', 1)))
    else:
      sampler = make_sampler(algorithm, data, config.clients_per_round, config.get('dropout_rate', 0.0), byzantine,
                             cohort_sampling, cohort_size, num_clients=train.num_clients)
    while round_index < rounds:
      if stop is not None and stop.is_set():
        if saved_round != round_index:
          checkpointer.save(round_index, state, totals)
        raise RunInterrupted(
            f'Stopped at round {round_index} of {rounds} on request; the checkpoint of round {round_index} is in '
            f'{checkpointer.directory}. Rerun the same command to resume.', round_index)
      length = min(eval_every - round_index % eval_every, rounds - round_index)
      tic = time.time()
      if host_data:
        state, block_metrics = engine.step_rounds(algorithm, prefetcher, state, base_key, length)
      else:
        state, block_metrics = engine.scan_rounds(algorithm, sampler, state, base_key, length, donate=True)
      block_metrics = jax.device_get(block_metrics)
      first_block_seconds = first_block_seconds or time.time() - tic
      losses_seen = np.asarray(block_metrics['train_loss'])
      # NaN because nobody reported is not a diverged model: only rounds with a participant count.
      bad_rounds = ~np.isfinite(losses_seen) & _reported(block_metrics)
      if bad_rounds.any():
        bad = round_index + int(np.argmax(bad_rounds)) + 1
        writer.write({'round': bad, 'train_loss': str(losses_seen[bad - round_index - 1]), 'diverged': True})
        _check_finite({'round': bad, 'train_loss': float(losses_seen[bad - round_index - 1])})
      round_index += length
      last_row = record(round_index, block_metrics, time.time() - start_time)
      _check_finite(last_row)
      warned_empty = _check_empty_rounds(config, totals['empty_rounds'], round_index, rounds, max_empty_fraction,
                                         warned_empty)
      if round_index % checkpoint_every == 0 or round_index == rounds:
        checkpointer.save(round_index, state, totals)
        saved_round = round_index
      progress.update(length)
      progress.set_postfix({k: f'{last_row[k]:.4f}' for k in ('train_loss', 'test_accuracy') if k in last_row})
  finally:
    if prefetcher is not None:
      prefetcher.close()
    progress.close()
    checkpointer.close()

  elapsed = time.time() - start_time
  summary = {
      'rounds': rounds,
      'resumed_from_round': start_round,
      'seconds': elapsed,
      'first_block_seconds_with_compile': first_block_seconds,
      'num_devices': placement_lib.num_mesh_clients(mesh),
      'placement': placement_lib.resolve_strategy(config.get('placement', 'auto')),
      'num_params': models_lib.num_params(state.params),
      'data_placement': data_placement,
      'population_split_over_devices': split_population,
      'sampling': cohort_sampling,
      'cohort_size': cohort_size,
      'empty_rounds': totals['empty_rounds'],
      'final': last_row,
  }
  if writes:
    _write_json(os.path.join(workdir, workdir_lib.SUMMARY_FILE), summary)
  summary.update(already_complete=False, params=state.params)
  return summary


def _check_empty_rounds(config, empty_rounds: int, round_index: int, rounds: int, max_fraction: float,
                        warned: bool) -> bool:
  """Refuses a run in which nobody has reported yet; warns once when the empty share exceeds max_fraction.

  Returns whether the warning has been given.
  """
  if empty_rounds == round_index and (round_index >= EMPTY_ROUNDS_BEFORE_REFUSING or round_index == rounds):
    raise NoParticipantsError(
        f'No client reported in any of the {round_index} rounds so far: nothing is being trained. Lower '
        f'config.dropout_rate={config.get("dropout_rate", 0.0)}, raise config.deadline={config.get("deadline", None)} '
        f'or config.clients_per_round={config.clients_per_round}; the metrics up to here are in metrics.jsonl.')
  if not warned and round_index and empty_rounds / round_index > max_fraction:
    logging.warning('%d of the %d rounds so far had no participant (more than config.max_empty_round_fraction=%g); '
                    'their train metrics are skipped, and the model did not learn in them.', empty_rounds,
                    round_index, max_fraction)
    return True
  return warned
