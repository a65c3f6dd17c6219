"""A real parameter server on Ray: a server actor holds the parameters, worker actors pull, compute a
JAX gradient and push. The same update rule as the simulator (`algorithms.async_ps`), so with
deterministic delays both produce the same arrival order and the same parameters.

  mode='async'  every worker loops: pull -> gradient -> (injected delay) -> push; the push returns
                the newest parameters, which the worker uses next (the simulator's "pull when the
                push lands"). The server applies each gradient on arrival (or every K-th with
                FedBuff) and stops accepting after exactly `num_updates` arrivals.
  mode='sync'   rounds with a barrier: the driver sends the parameters to every worker, waits for
                all m gradients, the server averages them and steps; `num_updates` rounds.

Injected delays are absolute: a worker's k-th push is released at start + sum_{j<=k} delay[j] (or
later, when the gradient takes longer), so scheduling jitter does not accumulate and the order
matches the simulator's for delays that are well separated.

A worker that raises (or dies) ends the run with `WorkerError`, which names the worker; the other
workers are told to stop (and killed if they do not). Start-up beyond `startup_timeout_s` or training
beyond `timeout_s` raises TimeoutError naming the workers still busy, and kills the actors.
`ParameterServerPool` keeps the actors (and their JAX import) alive across runs.

Ray is an optional dependency (`pip install fedjax_lab[ray]`) and is imported only when a run starts.
Call `ray.init(...)` yourself to choose resources; otherwise a local instance is started.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

PyTree = Any
MODES = ('async', 'sync')


class WorkerError(RuntimeError):
  """A Ray worker failed; `worker` is its index."""

  def __init__(self, worker: int, message: str):
    super().__init__(f'Parameter-server worker {worker} failed: {message}')
    self.worker = worker
    self.pending = []  # refs of the other workers still running when it failed


class RayPSResult(NamedTuple):
  """Outcome of a Ray parameter-server run.

  Attributes:
    params: final server parameters (numpy pytree).
    worker: [U] int32 worker of each accepted gradient, in the order applied.
    read_version: [U] int32 server version each gradient was computed on.
    staleness: [U] int32 server version at arrival minus read_version.
    arrival_time: [U] float64 seconds since the start at which the server applied it.
    num_updates: server steps taken.
    wall_clock: seconds from the start to the last update.
  """

  params: PyTree
  worker: np.ndarray
  read_version: np.ndarray
  staleness: np.ndarray
  arrival_time: np.ndarray
  num_updates: int
  wall_clock: float


def _import_ray():
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError('fedjax_lab.runtime.ray_ps needs Ray: pip install "fedjax_lab[ray]".') from err
  return ray


class _ServerState:
  """The server's update rule, shared by async and sync modes.

  Plain numpy on the flat list of parameter leaves, so the server process never imports JAX (which
  takes seconds); workers flatten and unflatten with the tree structure.
  """

  def __init__(self, params: list, learning_rate: float, damping: str, buffer_size: int, num_arrivals: int):
    self.params = [np.asarray(p, np.float32) for p in params]
    self.learning_rate, self.damping, self.buffer_size = learning_rate, damping, buffer_size
    self.num_arrivals = num_arrivals
    self.version, self.buffered = 0, 0
    self.accumulated = [np.zeros_like(p) for p in self.params]
    self.log = []
    self.start = time.perf_counter()
    self.stopped = False

  def weight(self, staleness: int) -> np.float32:
    if self.damping == 'inverse':
      return np.float32(1.0 / (1.0 + staleness))
    if self.damping == 'sqrt':
      return np.float32(1.0 / math.sqrt(1.0 + staleness))
    return np.float32(1.0)

  def push(self, worker: int, read_version: int, grad):
    if self.stopped:
      return self.version, self.params, True
    staleness = self.version - read_version
    weight = self.weight(staleness)
    self.accumulated = [a + weight * np.asarray(g, np.float32) for a, g in zip(self.accumulated, grad)]
    self.buffered += 1
    self.log.append((worker, read_version, staleness, time.perf_counter() - self.start))
    if self.buffered == self.buffer_size:
      step = np.float32(self.learning_rate / self.buffer_size)
      self.params = [p - step * a for p, a in zip(self.params, self.accumulated)]
      self.accumulated = [np.zeros_like(a) for a in self.accumulated]
      self.version, self.buffered = self.version + 1, 0
    self.stopped = len(self.log) >= self.num_arrivals
    return self.version, self.params, self.stopped


class _Server:
  """Ray actor wrapping _ServerState; methods run one at a time, so pushes are atomic."""

  def __init__(self):
    self.state = None

  def reset(self, *args):
    self.state = _ServerState(*args)

  def restart_clock(self):
    self.state.start = time.perf_counter()

  def pull(self):
    return self.state.version, self.state.params, self.state.stopped

  def push(self, worker, read_version, grad):
    return self.state.push(worker, read_version, grad)

  def push_round(self, read_version, grads):
    """Sync mode: all m gradients of a round in one call (in worker order)."""
    for worker, grad in enumerate(grads):
      result = self.state.push(worker, read_version, grad)
    return result

  def stop(self):
    self.state.stopped = True

  def result(self):
    return self.state.params, self.state.log, self.state.version


class _Worker:
  """Ray actor: one worker's data and jitted gradient (reconfigured for every run)."""

  def configure(self, index: int, loss_fn: Callable, data, treedef, delays, fail_at: int | None,
                call_timeout_s: float):
    import jax  # pylint: disable=g-import-not-at-top
    self.index, self.data, self.delays, self.fail_at = index, data, delays, fail_at
    self.call_timeout_s = call_timeout_s
    grad_fn = jax.jit(jax.grad(loss_fn))
    # Parameters travel as a flat list of leaves (the server does not import JAX).
    self.flat_grad = lambda leaves: [np.asarray(g) for g in jax.tree.leaves(
        grad_fn(jax.tree.unflatten(treedef, leaves), *self.data))]
    return index

  def _gradient(self, params, iteration: int):
    if self.fail_at is not None and iteration >= self.fail_at:
      raise RuntimeError(f'injected failure of worker {self.index} at iteration {iteration}')
    return self.flat_grad(params)

  def warm_up(self, params):
    self.flat_grad(params)  # compile before the clock starts
    return self.index

  def run_async(self, server, start: float):
    """Loops until the server reports done; returns the number of gradients pushed."""
    import ray  # pylint: disable=g-import-not-at-top
    version, params, done = ray.get(server.pull.remote(), timeout=self.call_timeout_s)
    release, iteration = start, 0
    while not done:
      grad = self._gradient(params, iteration)
      if self.delays is not None:
        release += float(self.delays[min(iteration, len(self.delays) - 1)])
        time.sleep(max(0.0, release - time.time()))
      version, params, done = ray.get(server.push.remote(self.index, version, grad), timeout=self.call_timeout_s)
      iteration += 1
    return iteration

  def sync_gradient(self, params, iteration: int):
    start = time.time()
    grad = self._gradient(params, iteration)
    if self.delays is not None:
      time.sleep(max(0.0, start + float(self.delays[min(iteration, len(self.delays) - 1)]) - time.time()))
    return grad


def _validate(num_workers, learning_rate, num_updates, mode, damping, buffer_size, delays, timeout_s):
  if num_workers < 1:
    raise ValueError(f'num_workers={num_workers} must be >= 1 (the leading axis of worker_data).')
  if not learning_rate > 0:
    raise ValueError(f'learning_rate={learning_rate} must be > 0.')
  if num_updates < 1:
    raise ValueError(f'num_updates={num_updates} must be >= 1.')
  if mode not in MODES:
    raise ValueError(f'mode={mode!r} must be one of {MODES}.')
  if damping not in ('none', 'inverse', 'sqrt'):
    raise ValueError(f"damping={damping!r} must be one of ('none', 'inverse', 'sqrt').")
  if not 1 <= buffer_size <= num_workers:
    raise ValueError(f'buffer_size={buffer_size} (FedBuff K) must lie in [1, num_workers={num_workers}].')
  if delays is not None:
    delays = np.asarray(delays, np.float64)
    if delays.ndim not in (1, 2) or delays.shape[0] != num_workers:
      raise ValueError(f'delays must have shape [m] or [m, T] with m={num_workers}, got {delays.shape}.')
    if not np.all(np.isfinite(delays)) or np.any(delays < 0):
      raise ValueError('delays must be finite and >= 0 seconds.')
    delays = delays[:, None] if delays.ndim == 1 else delays
  if not timeout_s > 0:
    raise ValueError(f'timeout_s={timeout_s} must be > 0.')
  return delays


class ParameterServerPool:
  """Long-lived Ray actors (one server, m workers) reused across runs.

  Starting an actor imports JAX in a fresh process (seconds); a pool pays that once. Any failed or
  timed-out run kills the actors, and the next run starts new ones. Use as a context manager or
  call `shutdown()`.
  """

  def __init__(self):
    self._server = None
    self._workers = []

  def actors(self, num_workers: int):
    """(server, first num_workers workers), starting whatever is missing."""
    ray = _import_ray()
    if not ray.is_initialized():
      ray.init(include_dashboard=False, log_to_driver=False)
    if self._server is None:
      self._server = ray.remote(_Server).options(num_cpus=0).remote()
    while len(self._workers) < num_workers:
      self._workers.append(ray.remote(_Worker).options(num_cpus=0, max_restarts=0).remote())
    return self._server, self._workers[:num_workers]

  def shutdown(self):
    if self._server is None and not self._workers:
      return
    ray = _import_ray()
    for actor in self._workers + [self._server]:
      if actor is not None:
        ray.kill(actor)
    self._server, self._workers = None, []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.shutdown()

  def run(self, *args, **kwargs) -> RayPSResult:
    """`run_parameter_server(*args, **kwargs)` on this pool's actors."""
    return run_parameter_server(*args, pool=self, **kwargs)


def run_parameter_server(
    loss_fn: Callable,
    params: PyTree,
    worker_data: Sequence[PyTree],
    learning_rate: float,
    num_updates: int,
    mode: str = 'async',
    damping: str = 'none',
    buffer_size: int = 1,
    delays=None,
    fail_at: dict[int, int] | None = None,
    timeout_s: float = 60.0,
    startup_timeout_s: float = 120.0,
    pool: ParameterServerPool | None = None,
) -> RayPSResult:
  """Trains with a Ray parameter server and measures wall-clock.

  Args:
    loss_fn: (params, *one_worker_data) -> scalar JAX loss (picklable, e.g. a module-level function).
    params: initial parameters (pytree of arrays).
    worker_data: FederatedData of the m workers (as the simulator takes it; each worker gets
      loss_fn(params, x, y, mask) of its rows), or a tuple of arrays with leaves [m, ...] (worker i
      gets slice i).
    learning_rate: server step size > 0.
    num_updates: async: gradients to apply (arrivals); sync: rounds (server steps).
    mode: 'async' or 'sync'.
    damping: 'none', 'inverse' or 'sqrt' (async only; sync gradients are never stale).
    buffer_size: FedBuff K (async only).
    delays: optional injected seconds per gradient, [m] (constant) or [m, T] (k-th gradient).
    fail_at: optional {worker: iteration} at which that worker raises (fault injection).
    timeout_s: limit of the training itself (after the actors are up and compiled), > 0.
    startup_timeout_s: limit for starting the actors and compiling the gradient, > 0.
    pool: actors to reuse; None starts fresh ones and kills them afterwards.

  Returns:
    RayPSResult.

  Raises:
    WorkerError: a worker raised or died (the message names it).
    TimeoutError: start-up or training did not finish in time (the message names the workers).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from fedjax_lab.algorithms import data_parallel  # pylint: disable=g-import-not-at-top
  from fedjax_lab.data.federated import FederatedData  # pylint: disable=g-import-not-at-top
  if isinstance(worker_data, FederatedData):
    worker_data = data_parallel.worker_arrays(worker_data)
  worker_data = tuple(worker_data)
  num_workers = int(jax.tree.leaves(worker_data)[0].shape[0])
  delays = _validate(num_workers, learning_rate, num_updates, mode, damping, buffer_size, delays, timeout_s)
  if not startup_timeout_s > 0:
    raise ValueError(f'startup_timeout_s={startup_timeout_s} must be > 0.')
  fail_at = dict(fail_at or {})
  ray = _import_ray()
  own_pool = pool is None
  pool = pool or ParameterServerPool()
  leaves, treedef = jax.tree.flatten(jax.tree.map(lambda p: np.asarray(p, np.float32), params))
  server_k = num_workers if mode == 'sync' else buffer_size
  num_arrivals = num_updates * num_workers if mode == 'sync' else num_updates
  reusable = False
  try:
    server, workers = pool.actors(num_workers)
    deadline = time.time() + startup_timeout_s
    setup = {server.reset.remote(leaves, learning_rate, damping if mode == 'async' else 'none', server_k,
                                 num_arrivals): 'server'}
    for i, w in enumerate(workers):
      data = jax.tree.map(lambda a, i=i: np.asarray(a[i]), worker_data)
      setup[w.configure.remote(i, loss_fn, data, treedef, None if delays is None else delays[i], fail_at.get(i),
                               timeout_s)] = i
    _wait_all(ray, setup, deadline, 'start-up')
    _wait_all(ray, {w.warm_up.remote(leaves): i for i, w in enumerate(workers)}, deadline, 'start-up')
    ray.get(server.restart_clock.remote(), timeout=timeout_s)
    deadline = time.time() + timeout_s
    if mode == 'async':
      start = time.time()
      _wait_all(ray, {w.run_async.remote(server, start): i for i, w in enumerate(workers)}, deadline, 'training',
                on_error=lambda: server.stop.remote())
    else:
      current = leaves
      for round_ in range(num_updates):
        grads = _wait_all(ray, {w.sync_gradient.remote(current, round_): i for i, w in enumerate(workers)},
                          deadline, 'training')
        _, current, _ = ray.get(server.push_round.remote(round_, [grads[i] for i in range(num_workers)]),
                                timeout=timeout_s)
    final, log, version = ray.get(server.result.remote(), timeout=timeout_s)
    reusable = True
  except WorkerError as err:
    # The others were told to stop; keep the actors if they all come back promptly.
    reusable = not err.pending or len(ray.wait(err.pending, num_returns=len(err.pending), timeout=10.0)[0]) == len(
        err.pending)
    raise
  finally:
    if own_pool or not reusable:
      pool.shutdown()

  worker, read_version, staleness, times = (np.asarray(v) for v in zip(*log))
  return RayPSResult(jax.tree.unflatten(treedef, final), worker.astype(np.int32), read_version.astype(np.int32),
                     staleness.astype(np.int32), times.astype(np.float64), int(version), float(times[-1]))


def _wait_all(ray, refs: dict, deadline: float, phase: str, on_error: Callable | None = None) -> dict:
  """Waits for every ref; returns {worker: value}. Fails fast on the first error or at the deadline."""
  results, pending = {}, dict(refs)
  while pending:
    ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.time()))
    if not ready:
      if on_error is not None:
        on_error()
      raise TimeoutError(f'Parameter-server {phase}: workers {sorted(map(str, pending.values()))} did not finish '
                         f'in time; raise the timeout or look for a hung worker.')
    for ref in ready:
      worker = pending.pop(ref)
      try:
        results[worker] = ray.get(ref)
      except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as err:
        if on_error is not None:
          on_error()
        cause = getattr(err, 'cause', None) or err
        error = WorkerError(worker, f'{type(cause).__name__}: {cause}')
        error.pending = list(pending)
        raise error from err
  return results
