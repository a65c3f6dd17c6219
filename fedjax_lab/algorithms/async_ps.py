"""Asynchronous parameter server, simulated deterministically: plain async SGD, staleness damping,
stale-synchronous parallel (bounded staleness) and buffered asynchronous aggregation (FedBuff).

The simulation has two halves.

1. **Host schedule** (numpy, `async_schedule`). Worker compute times are drawn beforehand
   (`systems.sample_slowdowns`); an event loop then decides who pushes when. A worker pulls the
   current server version, computes for its drawn time, pushes (one message), and pulls again at
   the moment its push lands (one message back). At equal times pushes are handled before pulls and
   workers in index order, so equally fast workers all read the same version. Stale-synchronous
   parallel (Ho et al. 2013) with bound s: a worker that has pushed more than s gradients more than
   the slowest worker waits (idle) until the slowest catches up; this changes the timeline, which
   is why it is decided here and not in the compiled part. FedBuff (Nguyen et al. 2022): the server
   version only advances every K arrivals. The schedule records, per arrival u, the worker, the
   version it read, the staleness tau_u = (server version when it lands) - (version read), whether
   the server steps, and the time.

2. **Compiled replay** (`simulate`): the server is an `Algorithm` (`async_server`) whose round is one
   arrival, run by the engine's one loop (`fedjax_lab.engine.scan_rounds`) over an `arrival_sampler`.
   The state keeps a ring buffer of the last S > max(tau) parameter versions (S a power of two, so
   similar runs share one compiled program; version v lives in slot v mod S); arrival
   u computes the gradient of its worker's loss at version read_version[u], weights it, and the
   server applies it:

     async / damped:  w <- w - lr * c(tau_u) * g_u                     (every arrival)
     FedBuff:         w <- w - lr * (1/K) sum_{u in buffer} c(tau_u) g_u (every K-th arrival)

   with c = 1 (plain), 1/(1 + tau) ('inverse', staleness-aware step size, Zhang et al. 2016) or
   1/sqrt(1 + tau) ('sqrt', FedBuff's weighting).

With all workers equally fast, no communication and K = 1, the m gradients of one "round" are all
computed on the same version and applied one after another: synchronous SGD with the same order of
gradients (w <- w - lr sum_i g_i), which the tests check.
"""

from __future__ import annotations

import functools
import heapq
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import engine
from fedjax_lab.algorithms import data_parallel
from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData, gather_clients
from fedjax_lab.systems import stragglers as stragglers_lib
from fedjax_lab.systems import timeline as timeline_lib

PyTree = Any
DAMPINGS = ('none', 'inverse', 'sqrt')


class AsyncConfig(NamedTuple):
  """Hyper-parameters of the asynchronous server.

  Attributes:
    num_workers: m >= 1.
    learning_rate: server step size > 0.
    staleness_bound: SSP bound s >= 0 on how far (in pushed gradients) a worker may run ahead of
      the slowest; None for unbounded (plain asynchronous).
    damping: 'none', 'inverse' (lr / (1 + tau)) or 'sqrt' (lr / sqrt(1 + tau)).
    buffer_size: FedBuff K in [1, num_workers]: the server steps after K arrivals (1: at once).
  """

  num_workers: int
  learning_rate: float
  staleness_bound: int | None = None
  damping: str = 'none'
  buffer_size: int = 1


def async_sgd(num_workers: int, learning_rate: float) -> AsyncConfig:
  """Plain asynchronous SGD (Hogwild-style parameter server): apply every gradient on arrival."""
  return validate_config(AsyncConfig(num_workers, learning_rate))


def damped_async_sgd(num_workers: int, learning_rate: float, damping: str = 'inverse') -> AsyncConfig:
  """Asynchronous SGD whose step shrinks with staleness: lr / (1 + tau) or lr / sqrt(1 + tau)."""
  return validate_config(AsyncConfig(num_workers, learning_rate, damping=damping))


def stale_synchronous(num_workers: int, learning_rate: float, staleness_bound: int) -> AsyncConfig:
  """Stale-synchronous parallel: no worker runs more than `staleness_bound` pushes ahead."""
  return validate_config(AsyncConfig(num_workers, learning_rate, staleness_bound=staleness_bound))


def fedbuff(num_workers: int, learning_rate: float, buffer_size: int, damping: str = 'sqrt') -> AsyncConfig:
  """FedBuff: the server averages K arrivals (weighted 1/sqrt(1 + tau)) and then steps."""
  return validate_config(AsyncConfig(num_workers, learning_rate, damping=damping, buffer_size=buffer_size))


def validate_config(config: AsyncConfig) -> AsyncConfig:
  """Raises ValueError naming the field out of range; returns the config."""
  if not isinstance(config.num_workers, (int, np.integer)) or config.num_workers < 1:
    raise ValueError(f'num_workers={config.num_workers} must be an integer >= 1.')
  if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
    raise ValueError(f'learning_rate={config.learning_rate} must be finite and > 0.')
  if config.staleness_bound is not None and config.staleness_bound < 0:
    raise ValueError(f'staleness_bound={config.staleness_bound} must be >= 0 (None: unbounded).')
  if config.damping not in DAMPINGS:
    raise ValueError(f'damping={config.damping!r} must be one of {DAMPINGS}.')
  if not 1 <= config.buffer_size <= config.num_workers:
    raise ValueError(f'buffer_size={config.buffer_size} (FedBuff K) must lie in [1, num_workers='
                     f'{config.num_workers}].')
  return config


def ssp_staleness_bound(num_workers: int, staleness_bound: int) -> int:
  """Largest staleness (in versions, K = 1) stale-synchronous parallel with bound s allows.

  While worker i computes, every other worker j pushes at most 2 s + 1 gradients (j starts at most
  s behind i and may end at most s + 1 ahead), so tau <= (m - 1)(2 s + 1).
  """
  return (num_workers - 1) * (2 * staleness_bound + 1)


# ----------------------------------------------------------------------------- host schedule


class AsyncSchedule(NamedTuple):
  """Who pushes when, and on which version, for U arrivals.

  Attributes:
    worker: [U] int32 worker whose gradient arrives.
    read_version: [U] int32 server version the gradient was computed on.
    staleness: [U] int32 server version at arrival minus read_version.
    server_step: [U] bool, True where the server steps (every arrival, or every K-th for FedBuff).
    arrival_time: [U] float64 simulated seconds at which the push lands.
    segments: per-worker Gantt intervals (compute / wait / communication) up to the last arrival.
    num_versions: server versions created (number of server steps).
  """

  worker: np.ndarray
  read_version: np.ndarray
  staleness: np.ndarray
  server_step: np.ndarray
  arrival_time: np.ndarray
  segments: timeline_lib.Segments
  num_versions: int

  @property
  def wall_clock(self) -> float:
    return float(self.arrival_time[-1]) if self.arrival_time.size else 0.0


_PUSH, _PULL = 0, 1  # at equal times pushes land before pulls are answered


def async_schedule(compute_seconds, num_arrivals: int, message_seconds: float = 0.0,
                   staleness_bound: int | None = None, buffer_size: int = 1) -> AsyncSchedule:
  """Event-driven schedule of an asynchronous parameter server.

  Args:
    compute_seconds: [T, m] compute time of worker i's k-th gradient (row k); T >= num_arrivals
      always suffices.
    num_arrivals: U >= 1 gradients to deliver.
    message_seconds: one push or one pull, >= 0 (`systems.message_seconds`).
    staleness_bound: SSP bound s >= 0, or None.
    buffer_size: FedBuff K >= 1.

  Returns:
    AsyncSchedule.
  """
  compute_seconds = np.asarray(compute_seconds, np.float64)
  if compute_seconds.ndim != 2 or compute_seconds.shape[1] < 1:
    raise ValueError(f'compute_seconds must have shape [T, m] with m >= 1, got {compute_seconds.shape}.')
  num_rows, num_workers = compute_seconds.shape
  if not np.all(np.isfinite(compute_seconds)) or np.any(compute_seconds < 0):
    raise ValueError('compute_seconds must be finite and >= 0 (a negative delay is not a delay).')
  if not (math.isfinite(message_seconds) and message_seconds >= 0):
    raise ValueError(f'message_seconds={message_seconds} must be finite and >= 0.')
  if num_arrivals < 1:
    raise ValueError(f'num_arrivals={num_arrivals} must be >= 1.')
  if staleness_bound is not None and staleness_bound < 0:
    raise ValueError(f'staleness_bound={staleness_bound} must be >= 0 (None: unbounded).')
  if not 1 <= buffer_size <= num_workers:
    raise ValueError(f'buffer_size={buffer_size} (FedBuff K) must lie in [1, num_workers={num_workers}].')

  version, buffered = 0, 0
  clock = np.zeros(num_workers, np.int64)  # gradients pushed by each worker
  read = np.zeros(num_workers, np.int64)
  waiting_since: dict[int, float] = {}
  arrivals = []  # (worker, read_version, staleness, server_step, time)
  segments = []  # (worker, start, end, kind)
  events = []

  def start(worker, now, pull_latency):
    # The worker reads the version current at `now`, receives it after the pull, then computes.
    k = clock[worker]
    if k >= num_rows:
      raise ValueError(f'compute_seconds has {num_rows} rows but worker {worker} needs more; pass T >= num_arrivals.')
    read[worker] = version
    begin = now + pull_latency
    if pull_latency > 0:
      segments.append((worker, now, begin, timeline_lib.COMMUNICATION))
    done = begin + compute_seconds[k, worker]
    segments.append((worker, begin, done, timeline_lib.COMPUTE))
    if message_seconds > 0:
      segments.append((worker, done, done + message_seconds, timeline_lib.COMMUNICATION))
    heapq.heappush(events, (done + message_seconds, _PUSH, worker))

  for worker in range(num_workers):
    start(worker, 0.0, 0.0)  # the initial parameters are already on every worker

  while len(arrivals) < num_arrivals:
    now, kind, worker = heapq.heappop(events)
    if kind == _PUSH:
      buffered += 1
      step = buffered == buffer_size
      arrivals.append((worker, read[worker], version - read[worker], step, now))
      if step:
        version, buffered = version + 1, 0
      clock[worker] += 1
      heapq.heappush(events, (now, _PULL, worker))
      if staleness_bound is not None:  # the slowest may have moved: release those now in bound
        for other in sorted(waiting_since):
          if clock[other] - clock.min() <= staleness_bound:
            segments.append((other, waiting_since.pop(other), now, timeline_lib.WAIT))
            heapq.heappush(events, (now, _PULL, other))
    elif staleness_bound is not None and clock[worker] - clock.min() > staleness_bound:
      waiting_since[worker] = now
    else:
      start(worker, now, message_seconds)

  worker, read_version, staleness, server_step, times = (np.asarray(v) for v in zip(*arrivals))
  end = times[-1]
  for other, since in waiting_since.items():
    segments.append((other, since, end, timeline_lib.WAIT))
  seg = np.asarray(segments, np.float64).reshape(-1, 4)
  seg = seg[seg[:, 1] < end]
  seg[:, 2] = np.minimum(seg[:, 2], end)
  return AsyncSchedule(
      worker.astype(np.int32), read_version.astype(np.int32), staleness.astype(np.int32),
      server_step.astype(bool), times.astype(np.float64),
      timeline_lib.Segments(seg[:, 0].astype(np.int32), seg[:, 1], seg[:, 2], seg[:, 3].astype(np.int32)),
      int(version))


def draw_compute_seconds(num_rows: int, num_workers: int, seconds_per_gradient: float,
                         stragglers: stragglers_lib.StragglerModel, seed: int) -> np.ndarray:
  """[T, m] compute times: nominal seconds per gradient times straggler slowdowns (numpy, seeded)."""
  if not (seconds_per_gradient >= 0 and math.isfinite(seconds_per_gradient)):
    raise ValueError(f'seconds_per_gradient={seconds_per_gradient} must be finite and >= 0.')
  return seconds_per_gradient * stragglers_lib.sample_slowdowns(stragglers, num_rows, num_workers, seed)


def staleness_weights(staleness, damping: str) -> np.ndarray:
  """c(tau): 1, 1/(1 + tau) or 1/sqrt(1 + tau), float32 [U]."""
  tau = np.asarray(staleness, np.float64)
  if damping == 'none':
    return np.ones_like(tau, np.float32)
  if damping == 'inverse':
    return (1.0 / (1.0 + tau)).astype(np.float32)
  if damping == 'sqrt':
    return (1.0 / np.sqrt(1.0 + tau)).astype(np.float32)
  raise ValueError(f'damping={damping!r} must be one of {DAMPINGS}.')


# ----------------------------------------------------------------------------- the algorithm


class Arrival(NamedTuple):
  """One arriving gradient, as the asynchronous server sees it (`RoundInputs.arrival`); leaves [].

  Attributes:
    read_version: server version the gradient was computed on.
    step_size: the learning rate times its staleness weight, over the buffer size:
      lr * c(tau) / K.
    server_step: True when the server applies its buffer after this arrival.
    staleness: tau, server version at arrival minus read_version.
    time: simulated seconds at which the push lands.
  """

  read_version: jax.Array
  step_size: jax.Array
  server_step: jax.Array
  staleness: jax.Array
  time: jax.Array


class AsyncState(NamedTuple):
  """State of the simulated asynchronous server.

  Attributes:
    params: the server's current parameters.
    ring: the last S parameter versions, leaves [S, ...]; version v lives in slot v mod S.
    version: [] int32 server steps taken.
    buffer: sum of lr * c(tau) / K * g over the arrivals since the last server step (float32).
    round: [] int32 arrivals processed.
  """

  params: PyTree
  ring: PyTree
  version: jax.Array
  buffer: PyTree
  round: jax.Array


class ScheduleData(NamedTuple):
  """What `arrival_sampler` reads: the workers' data and the schedule's per-arrival arrays ([U])."""

  workers: FederatedData
  worker: jax.Array
  arrival: Arrival


@functools.lru_cache(maxsize=64)
def async_server(loss_fn: Callable, ring_size: int) -> Algorithm:
  """The asynchronous parameter server (and FedBuff) as an Algorithm: one round = one arrival.

  Arrival u computes the gradient of its worker's loss at the version it read (slot read_version
  mod S of the ring), adds step_size * g to the buffer, and when the schedule says the server steps,
  applies w <- w - buffer. Everything that differs between runs of the same shapes (the learning
  rate, the damping, FedBuff's K, the schedule) is in the inputs, so one compilation serves a sweep.

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> scalar loss (e.g. least_squares_loss).
    ring_size: S > the schedule's largest staleness (static; `ring_size`).

  Returns:
    Algorithm with inputs='arrivals' (`arrival_sampler`); metrics 'train_loss' (the arriving worker's
    loss at the version it read), 'staleness', 'server_version', 'sim_time' and the shared names.
  """
  grad_fn = jax.value_and_grad(loss_fn)

  def init(params) -> AsyncState:
    ring = jax.tree.map(lambda p: jnp.broadcast_to(p, (ring_size,) + jnp.shape(p)), params)
    buffer = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params)
    zero = jnp.zeros((), jnp.int32)
    return AsyncState(params, ring, zero, buffer, zero)

  def step(state: AsyncState, inputs: sampling.RoundInputs, rng):
    del rng  # the schedule decides everything random
    arrival = inputs.arrival
    x, y, mask = (a[0] for a in data_parallel.worker_arrays(sampling.materialize(inputs).data))
    stale_params = jax.tree.map(lambda r: r[arrival.read_version % ring_size], state.ring)
    loss, grad = grad_fn(stale_params, x, y, mask)
    buffer = jax.tree.map(lambda b, g: b + arrival.step_size * g, state.buffer, grad)
    stepped = jax.tree.map(lambda p, b: p - b.astype(p.dtype), state.params, buffer)
    params = jax.tree.map(lambda new, old: jnp.where(arrival.server_step, new, old), stepped, state.params)
    buffer = jax.tree.map(lambda b: jnp.where(arrival.server_step, jnp.zeros_like(b), b), buffer)
    version = state.version + arrival.server_step.astype(jnp.int32)
    # Slot `version` now holds the current parameters (rewritten unchanged between FedBuff steps).
    ring = jax.tree.map(lambda r, p: r.at[version % ring_size].set(p), state.ring, params)
    model_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(state.params))
    metrics = {
        'train_loss': loss,
        'participants': jnp.ones((), jnp.int32),
        'bytes_up': jnp.asarray(model_bytes, jnp.float32),    # the pushed gradient
        'bytes_down': jnp.asarray(model_bytes, jnp.float32),  # the pulled parameters
        'staleness': arrival.staleness,
        'server_version': version,
        'sim_time': arrival.time,
    }
    return AsyncState(params, ring, version, buffer, state.round + 1), metrics

  return Algorithm(init, step, 'async_ps', inputs='arrivals')


def ring_size(schedule: AsyncSchedule) -> int:
  """S > max staleness, rounded up to a power of two so that similar runs share one compilation."""
  return 1 << int(schedule.staleness.max()).bit_length()


def _sample_arrival(data: ScheduleData, round_index, key):
  del key
  worker = data.worker[round_index]
  arrival = jax.tree.map(lambda a: a[round_index], data.arrival)
  ids = worker[None]
  return sampling.RoundInputs(gather_clients(data.workers, ids), ids, jnp.ones((1,), bool), jnp.zeros((1,), bool),
                              arrival=arrival)


def arrival_sampler(workers: FederatedData, config: AsyncConfig, schedule: AsyncSchedule) -> engine.Sampler:
  """Round u's inputs: arrival u of `schedule` (its worker's data and the Arrival record).

  Args:
    workers: FederatedData of the m workers (e.g. `data_parallel.shard_data(x, y, m)`).
    config: AsyncConfig (learning rate, damping, buffer size).
    schedule: from `async_schedule` with the config's staleness bound and buffer size.
  """
  validate_config(config)
  num_arrivals = schedule.worker.shape[0]
  data_workers = {leaf.shape[0] for leaf in jax.tree.leaves(workers)}
  if data_workers != {config.num_workers} or schedule.worker.max() >= config.num_workers:
    raise ValueError(f'num_workers={config.num_workers} must match the worker axis of the data '
                     f'{sorted(data_workers)} and the schedule.')
  if config.buffer_size > 1 and not np.array_equal(
      schedule.server_step, (np.arange(num_arrivals) + 1) % config.buffer_size == 0):
    raise ValueError(f'The schedule was not built with buffer_size={config.buffer_size}.')
  step_size = (config.learning_rate / config.buffer_size
               * staleness_weights(schedule.staleness, config.damping)).astype(np.float32)
  arrival = Arrival(jnp.asarray(schedule.read_version), jnp.asarray(step_size), jnp.asarray(schedule.server_step),
                    jnp.asarray(schedule.staleness), jnp.asarray(schedule.arrival_time, jnp.float32))
  return engine.Sampler(_sample_arrival, ScheduleData(FederatedData(*workers), jnp.asarray(schedule.worker), arrival))


# ----------------------------------------------------------------------------- simulation


class AsyncResult(NamedTuple):
  """Outcome of a simulated asynchronous run.

  Attributes:
    params: final server parameters.
    eval_loss: [U / eval_every] eval_fn of the server parameters after every eval_every arrivals
      (empty when no eval_fn).
    worker_loss: [U] loss of each arriving worker's data at the version it read.
    schedule: the host schedule that was replayed.
  """

  params: PyTree
  eval_loss: jax.Array
  worker_loss: jax.Array
  schedule: AsyncSchedule


@functools.lru_cache(maxsize=64)
def _evaluate_params(eval_fn: Callable):
  return lambda state: eval_fn(state.params)


def simulate(loss_fn: Callable, params: PyTree, workers: FederatedData, config: AsyncConfig,
             schedule: AsyncSchedule, eval_fn: Callable | None = None, eval_every: int = 1) -> AsyncResult:
  """Replays `schedule` with the engine's one loop: every arrival's gradient at the version its worker read.

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> scalar.
    params: initial parameters (version 0).
    workers: FederatedData of the m workers, e.g. `data_parallel.shard_data(x, y, m)`.
    config: AsyncConfig (num_workers must match the schedule and the data).
    schedule: from `async_schedule` with the same staleness bound and buffer size.
    eval_fn: optional params -> scalar evaluated every `eval_every` arrivals.
    eval_every: divides the number of arrivals.

  Returns:
    AsyncResult.
  """
  sampler = arrival_sampler(workers, config, schedule)
  num_arrivals = schedule.worker.shape[0]
  if eval_every < 1 or num_arrivals % eval_every:
    raise ValueError(f'eval_every={eval_every} must be >= 1 and divide the {num_arrivals} arrivals.')
  algorithm = async_server(loss_fn, ring_size(schedule))
  state = algorithm.init(params)
  evaluate = None if eval_fn is None else (eval_every, _evaluate_params(eval_fn))
  out = engine.scan_rounds(algorithm, sampler, state, jax.random.key(0), num_arrivals, evaluate=evaluate)
  if eval_fn is None:
    state, metrics = out
    evaluated = jnp.zeros((0,))
  else:
    state, (metrics, evaluated) = out
  return AsyncResult(state.params, evaluated, metrics['train_loss'], schedule)


def run_async(loss_fn: Callable, params: PyTree, workers: FederatedData, config: AsyncConfig, num_arrivals: int,
              seconds_per_gradient: float = 1.0, message_seconds: float = 0.0,
              stragglers: stragglers_lib.StragglerModel = stragglers_lib.StragglerModel(), seed: int = 0,
              eval_fn: Callable | None = None, eval_every: int = 1) -> AsyncResult:
  """Draws compute times, builds the schedule and replays it (the one-call entry point)."""
  validate_config(config)
  compute = draw_compute_seconds(num_arrivals, config.num_workers, seconds_per_gradient, stragglers, seed)
  schedule = async_schedule(compute, num_arrivals, message_seconds, config.staleness_bound, config.buffer_size)
  return simulate(loss_fn, params, workers, config, schedule, eval_fn, eval_every)
