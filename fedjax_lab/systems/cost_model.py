"""Wall-clock cost model of synchronous data-parallel training (the "MapReduce" picture).

One synchronous iteration with m workers:

  every worker computes its gradient          compute[t, i] = work_i / speed * slowdown[t, i]
  everyone waits at the barrier               wait[t, i]    = max_j compute[t, j] - compute[t, i]
  gradients are reduced, parameters sent back communication(m) (the same for every worker)
  iteration time                              max_j compute[t, j] + communication(m)

Communication of a B-byte message over a link is `latency + B / bandwidth` (the alpha-beta model).
  'server'  a parameter server whose link all traffic shares: m pushes then m pulls, one after
            another, 2 m (latency + B / bandwidth).
  'ring'    ring all-reduce (reduce-scatter then all-gather): 2 (m - 1) steps, each sending a chunk
            of B / m bytes, 2 (m - 1) (latency + B / (m bandwidth)); every worker sends
            2 (m - 1) / m * B bytes.
An asynchronous worker talks to the server alone: one push and one pull, 2 (latency + B / bandwidth)
(contention on the server link is not modelled for the asynchronous case).

Everything here is plain numpy on the host, vectorized over iterations and workers; times are in
seconds. Speedup is measured against one machine computing the whole gradient with no
communication and no stragglers, so the ideal curve is speedup = m.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fedjax_lab.systems import stragglers as stragglers_lib

TOPOLOGIES = ('server', 'ring')


class Network(NamedTuple):
  """The alpha-beta network model.

  Attributes:
    bandwidth: bytes per second of one link, > 0 (math.inf: free transfers).
    latency: seconds per message, >= 0.
    topology: 'server' or 'ring' (for synchronous reduction).
  """

  bandwidth: float = math.inf
  latency: float = 0.0
  topology: str = 'server'


def validate_num_workers(num_workers, field: str = 'num_workers') -> np.ndarray:
  """Returns num_workers as an int array; raises ValueError unless every entry is an integer >= 1."""
  m = np.asarray(num_workers)
  if m.size == 0 or not np.all(np.isfinite(m)) or np.any(m != np.round(m)) or np.any(m < 1):
    raise ValueError(f'{field}={num_workers} must be integers >= 1.')
  return m.astype(np.int64)


def validate_network(network: Network) -> None:
  """Raises ValueError naming the field of `network` that is out of range."""
  if network.topology not in TOPOLOGIES:
    raise ValueError(f'network.topology={network.topology!r} is not one of {TOPOLOGIES}.')
  if not network.bandwidth > 0:
    raise ValueError(f'network.bandwidth={network.bandwidth} must be > 0 bytes/s (inf: free).')
  if not (math.isfinite(network.latency) and network.latency >= 0):
    raise ValueError(f'network.latency={network.latency} must be a finite number of seconds >= 0.')


def _check_nonnegative(name: str, value) -> np.ndarray:
  value = np.asarray(value, np.float64)
  if not np.all(np.isfinite(value)) or np.any(value < 0):
    raise ValueError(f'{name} must be finite and >= 0 (got min {np.min(value) if value.size else value}).')
  return value


def message_seconds(num_bytes, network: Network) -> np.ndarray:
  """Time to send one message of `num_bytes` over one link: latency + bytes / bandwidth."""
  validate_network(network)
  num_bytes = _check_nonnegative('num_bytes', num_bytes)
  return network.latency + num_bytes / network.bandwidth


def sync_communication_seconds(num_bytes, num_workers, network: Network) -> np.ndarray:
  """Time to reduce m gradients of `num_bytes` and return the new parameters.

  Args:
    num_bytes: size of the gradient (= of the parameters), scalar.
    num_workers: m, scalar or array [K] of worker counts.
    network: link model and topology.

  Returns:
    seconds, shaped like num_workers.
  """
  validate_network(network)
  m = validate_num_workers(num_workers).astype(np.float64)
  num_bytes = _check_nonnegative('num_bytes', num_bytes)
  if network.topology == 'server':
    return 2 * m * (network.latency + num_bytes / network.bandwidth)
  return 2 * (m - 1) * (network.latency + num_bytes / (m * network.bandwidth))


def bytes_sent_per_worker(num_bytes, num_workers, topology: str) -> np.ndarray:
  """Bytes one worker sends per synchronous iteration: B to the server, 2 (m-1)/m B in a ring."""
  if topology not in TOPOLOGIES:
    raise ValueError(f'network.topology={topology!r} is not one of {TOPOLOGIES}.')
  m = validate_num_workers(num_workers).astype(np.float64)
  num_bytes = _check_nonnegative('num_bytes', num_bytes)
  return num_bytes * np.ones_like(m) if topology == 'server' else 2 * (m - 1) / m * num_bytes


def async_communication_seconds(num_bytes, network: Network) -> np.ndarray:
  """One asynchronous worker's push plus pull through the server: 2 (latency + B / bandwidth)."""
  return 2 * message_seconds(num_bytes, network)


def compute_seconds(flops, flops_per_second: float, slowdowns) -> np.ndarray:
  """Per-worker compute time: flops / speed * slowdown.

  Args:
    flops: work of one worker's gradient, scalar or broadcastable to slowdowns.
    flops_per_second: nominal speed of a worker, > 0.
    slowdowns: [T, m] factors from `stragglers.sample_slowdowns`.

  Returns:
    seconds [T, m].
  """
  if not flops_per_second > 0:
    raise ValueError(f'flops_per_second={flops_per_second} must be > 0.')
  flops = _check_nonnegative('flops', flops)
  slowdowns = np.asarray(slowdowns, np.float64)
  if np.any(slowdowns <= 0):
    raise ValueError('slowdowns must be > 0.')
  return flops / flops_per_second * slowdowns


def least_squares_gradient_flops(num_examples, dim) -> np.ndarray:
  """FLOPs of X^T (X w - y) for X [n, d]: 2nd for Xw, n for the residual, 2nd for X^T r."""
  return 4.0 * np.asarray(num_examples, np.float64) * dim + np.asarray(num_examples, np.float64)


class SyncTimeline(NamedTuple):
  """Where the time of each synchronous iteration goes.

  Attributes:
    compute: [T, m] seconds each worker computes.
    wait: [T, m] seconds each worker waits at the barrier (max - own).
    communication: [T] seconds of the reduction + broadcast.
    iteration_seconds: [T] max compute + communication.
    start: [T] simulated time each iteration starts (0 for the first).
    end: [T] simulated time each iteration ends: the wall-clock after t + 1 iterations.
  """

  compute: np.ndarray
  wait: np.ndarray
  communication: np.ndarray
  iteration_seconds: np.ndarray
  start: np.ndarray
  end: np.ndarray


def sync_timeline(compute, communication) -> SyncTimeline:
  """Simulated wall-clock of T synchronous iterations.

  Args:
    compute: [T, m] per-worker compute seconds.
    communication: scalar or [T] seconds per iteration.

  Returns:
    SyncTimeline.
  """
  compute = _check_nonnegative('compute seconds', compute)
  if compute.ndim != 2 or compute.shape[1] < 1:
    raise ValueError(f'compute must have shape [T, m] with m >= 1, got {compute.shape}.')
  communication = np.broadcast_to(_check_nonnegative('communication seconds', communication),
                                  compute.shape[:1]).astype(np.float64)
  slowest = compute.max(axis=1) if compute.shape[0] else np.zeros(0)
  iteration = slowest + communication
  end = np.cumsum(iteration)
  return SyncTimeline(compute, slowest[:, None] - compute, communication, iteration, end - iteration, end)


class SpeedupCurve(NamedTuple):
  """Modelled speedup of synchronous data parallelism, one entry per worker count.

  The three parts add up: compute + wait + communication = iteration_seconds.

  Attributes:
    num_workers: [K] worker counts m.
    compute: [K] mean seconds a worker computes per iteration.
    wait: [K] mean seconds a worker waits at the barrier per iteration.
    communication: [K] seconds of communication per iteration.
    iteration_seconds: [K] mean wall-clock per iteration.
    speedup: [K] serial_seconds / iteration_seconds.
    efficiency: [K] speedup / m.
  """

  num_workers: np.ndarray
  compute: np.ndarray
  wait: np.ndarray
  communication: np.ndarray
  iteration_seconds: np.ndarray
  speedup: np.ndarray
  efficiency: np.ndarray


def sync_speedup(
    num_workers,
    serial_seconds: float,
    num_bytes: float,
    network: Network,
    worker_seconds=None,
    stragglers: stragglers_lib.StragglerModel = stragglers_lib.StragglerModel(),
    num_iterations: int = 1,
    seed: int = 0,
) -> SpeedupCurve:
  """Speedup of synchronous data-parallel gradient descent over one machine.

  Args:
    num_workers: [K] worker counts m (integers >= 1).
    serial_seconds: one machine's time for the full gradient (no communication), > 0.
    num_bytes: gradient size in bytes.
    network: link model and topology.
    worker_seconds: [K] measured time of one worker's share for each m; default serial_seconds / m
      (perfect division of the work).
    stragglers: slowdown model; random ones are averaged over `num_iterations` draws.
    num_iterations: iterations simulated per m (more: a smoother average of the max).
    seed: numpy seed of the straggler draws.

  Returns:
    SpeedupCurve.
  """
  m = validate_num_workers(num_workers)
  if not serial_seconds > 0:
    raise ValueError(f'serial_seconds={serial_seconds} must be > 0.')
  if num_iterations < 1:
    raise ValueError(f'num_iterations={num_iterations} must be >= 1.')
  if worker_seconds is None:
    worker_seconds = serial_seconds / m
  worker_seconds = np.broadcast_to(_check_nonnegative('worker_seconds', worker_seconds), m.shape)
  communication = sync_communication_seconds(num_bytes, m, network)
  rng = np.random.default_rng(seed)
  compute, wait, iteration = [], [], []
  for m_k, seconds, comm in zip(m.ravel(), worker_seconds.ravel(), communication.ravel()):
    slowdowns = stragglers_lib.sample_slowdowns(stragglers, num_iterations, int(m_k), rng)
    timeline = sync_timeline(seconds * slowdowns, comm)
    compute.append(timeline.compute.mean())
    wait.append(timeline.wait.mean())
    iteration.append(timeline.iteration_seconds.mean())
  compute, wait, iteration = (np.reshape(v, m.shape) for v in (compute, wait, iteration))
  speedup = serial_seconds / iteration
  return SpeedupCurve(m, compute, wait, communication, iteration, speedup, speedup / m)
