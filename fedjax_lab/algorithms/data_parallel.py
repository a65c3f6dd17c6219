"""Synchronous data-parallel gradient descent ("MapReduce"), and the least-squares worked example.

The n examples are split into m shards, one per worker. In every iteration each worker computes the
gradient of the loss summed over its shard (map), the sums are added (reduce) and divided by n, and
the server takes one step. The result is exactly full-batch gradient descent on

  f(w) = 1/n sum_j loss(w; x_j, y_j),

whatever m is; only the wall-clock changes (see `fedjax_lab.systems`). Workers are the clients of a
FederatedData (`shard_data`), every one of them reports every iteration (`Algorithm.inputs =
'every_client'`), and the map over workers goes through `fedjax_lab.clients.placement` like every other
per-client computation: vmap / scan / chunks on one device, or across a mesh each device summing its
workers' gradients and one `psum` adding them (the all-reduce of the systems model).

Least squares: f(w) = 1/(2n) ||X w - y||^2, gradient X^T (X w - y) / n, Lipschitz constant of the
gradient L = lambda_max(X^T X / n); gradient descent with step 1/L converges to the solution of
numpy.linalg.lstsq.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData

PyTree = Any
LossFn = Callable[[PyTree, jax.Array, jax.Array, jax.Array], jax.Array]


# ----------------------------------------------------------------------------- least squares


class LeastSquares(NamedTuple):
  """A least-squares problem and its closed-form answer.

  Attributes:
    x: [n, d] float32 design matrix.
    y: [n] float32 targets.
    w_star: [d] float64 minimiser from numpy.linalg.lstsq.
    loss_star: f(w_star), float.
    lipschitz: L = lambda_max(X^T X / n), float.
    strong_convexity: mu = lambda_min(X^T X / n), float.
  """

  x: np.ndarray
  y: np.ndarray
  w_star: np.ndarray
  loss_star: float
  lipschitz: float
  strong_convexity: float


def least_squares_loss(w: jax.Array, x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean over real rows of 0.5 (x_j . w - y_j)^2: w [d], x [B, d], y [B], mask [B] -> scalar."""
  residual = x @ w - y
  values = 0.5 * jnp.square(residual)
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def least_squares_problem(num_examples: int, dim: int, noise: float = 0.1, seed: int = 0,
                          condition_number: float = 10.0) -> LeastSquares:
  """A random least-squares problem with a chosen conditioning.

  X = U diag(s) V^T with singular values spread geometrically so that X^T X / n has condition
  number `condition_number`; y = X w_true + noise * N(0, 1). noise = 0 makes the system consistent
  (every shard's gradient vanishes at w_star).

  Args:
    num_examples: n >= dim.
    dim: d >= 1.
    noise: standard deviation of the label noise, >= 0.
    seed: numpy seed.
    condition_number: lambda_max / lambda_min of X^T X / n, >= 1.

  Returns:
    LeastSquares.
  """
  if dim < 1 or num_examples < dim:
    raise ValueError(f'Need 1 <= dim <= num_examples, got dim={dim}, num_examples={num_examples}.')
  if noise < 0 or condition_number < 1:
    raise ValueError(f'noise={noise} must be >= 0 and condition_number={condition_number} >= 1.')
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(num_examples, dim)))
  v, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  eigenvalues = np.geomspace(1.0, 1.0 / condition_number, dim)
  x = (u * np.sqrt(eigenvalues * num_examples)) @ v.T
  w_true = rng.normal(size=dim)
  y = x @ w_true + noise * rng.normal(size=num_examples)
  return solve_least_squares(x.astype(np.float32), y.astype(np.float32))


def solve_least_squares(x, y) -> LeastSquares:
  """Closed form (numpy.linalg.lstsq in float64), f*, L and mu for x [n, d], y [n]."""
  x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
  w_star = np.linalg.lstsq(x64, y64, rcond=None)[0]
  eigenvalues = np.linalg.eigvalsh(x64.T @ x64 / x64.shape[0])
  loss_star = 0.5 * np.mean(np.square(x64 @ w_star - y64))
  return LeastSquares(np.asarray(x), np.asarray(y), w_star, float(loss_star), float(eigenvalues[-1]),
                      float(eigenvalues[0]))


# ----------------------------------------------------------------------------- sharding


def shard_data(x, y, num_workers: int) -> FederatedData:
  """Splits x [n, ...], y [n] into `num_workers` contiguous shards of ceil(n / m) rows (padded).

  Returns:
    FederatedData: x [m, b, ...], y [m, b], num_examples [m] (the last shard may be shorter).

  Raises ValueError unless 1 <= num_workers <= n.
  """
  n = int(np.shape(y)[0])
  if not isinstance(num_workers, (int, np.integer)) or not 1 <= num_workers <= n:
    raise ValueError(f'num_workers={num_workers} must be an integer in [1, n={n}].')
  size = -(-n // num_workers)
  pad = size * num_workers - n
  x = np.concatenate([np.asarray(x), np.zeros((pad,) + np.shape(x)[1:], np.asarray(x).dtype)])
  y = np.concatenate([np.asarray(y), np.zeros((pad,), np.asarray(y).dtype)])
  counts = np.clip(n - size * np.arange(num_workers), 0, size).astype(np.int32)
  reshape = lambda a: jnp.asarray(a.reshape((num_workers, size) + a.shape[1:]))
  return FederatedData(reshape(x), reshape(y), jnp.asarray(counts))


def replicate_data(x, y, num_workers: int) -> FederatedData:
  """Every worker holds all n examples (each computes the full gradient): leaves [m, n, ...]."""
  if num_workers < 1:
    raise ValueError(f'num_workers={num_workers} must be >= 1.')
  tile = lambda a: jnp.broadcast_to(jnp.asarray(a), (num_workers,) + np.shape(a))
  n = np.shape(y)[0]
  return FederatedData(tile(x), tile(y), jnp.full((num_workers,), n, jnp.int32))


def worker_arrays(data: FederatedData) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(x [m, b, ...], y [m, b], mask [m, b] bool): each worker's rows for `loss_fn(params, x, y, mask)`."""
  return data.x, data.y, data.mask()


def worker_weights(data: FederatedData, participation: jax.Array | None = None) -> jax.Array:
  """[m] each reporting worker's share of the real examples (sums to 1; all zero if none reports)."""
  counts = jnp.asarray(data.num_examples, jnp.float32)
  if participation is not None:
    counts = jnp.where(participation, counts, 0.0)
  total = jnp.sum(counts)
  return counts / jnp.where(total > 0, total, 1.0)


# ----------------------------------------------------------------------------- the algorithm


class DataParallelState(NamedTuple):
  """Attributes: params (pytree); round: [] int32 iterations completed."""

  params: PyTree
  round: jax.Array


def _worker_loss_and_grad(loss_fn: LossFn):
  def one(params, worker):
    x, y, mask = worker
    return jax.value_and_grad(loss_fn)(params, x, y, mask)
  return one


def full_gradient(loss_fn: LossFn, params: PyTree, data: FederatedData, participation: jax.Array | None = None,
                  placement: str = 'auto', chunk_size: int | None = None, mesh=None) -> tuple[jax.Array, PyTree]:
  """Loss and gradient of the mean loss over the reporting workers' real examples, worker by worker.

  The map over workers and the weighted reduce are `fedjax_lab.clients.placement.weighted_sum_clients`:
  vmap / scan / chunks on one device, or each device summing its workers and one `psum` across a
  mesh (the all-reduce of the systems model).

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> mean loss over the real rows.
    params: pytree.
    data: FederatedData of the workers, leaves [m, b, ...].
    participation: optional [m] bool, False for a worker whose gradient never arrives.
    placement, chunk_size, mesh: see `fedjax_lab.clients.placement`.

  Returns:
    (loss scalar, gradient pytree like params).
  """
  weights = worker_weights(data, participation)
  one = _worker_loss_and_grad(loss_fn)
  workers = placement_lib.make_placement(placement, chunk_size, mesh)
  return workers.weighted_sum_clients(one, params, worker_arrays(data), weights)


def data_parallel_gd(loss_fn: LossFn, learning_rate: float, placement: str = 'auto', chunk_size: int | None = None,
                     mesh=None) -> Algorithm:
  """Synchronous data-parallel gradient descent: w <- w - lr * (1/n) sum_i grad_i.

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> mean loss over the real rows, e.g.
      `least_squares_loss` or `functools.partial(models.batch_loss, model)`.
    learning_rate: step size > 0 (1/L for least squares).
    placement, chunk_size, mesh: how the workers' gradients are computed (`fedjax_lab.clients.placement`).

  Returns:
    Algorithm with inputs='every_client' (worker i = client i of the data, every iteration):
    init(params) -> DataParallelState; step(state, RoundInputs, rng) -> (state, metrics): 'train_loss'
    (f before the step), 'grad_norm', 'participants', 'bytes_up', 'bytes_down'.
  """
  if not (np.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f'learning_rate={learning_rate} must be finite and > 0.')
  placement_lib.make_placement(placement, chunk_size, mesh)  # refuses a bad placement before compiling

  def init(params):
    return DataParallelState(params, jnp.zeros((), jnp.int32))

  def step(state, inputs: sampling.RoundInputs, rng=None):
    del rng  # full-batch gradient descent is deterministic
    data = sampling.materialize(inputs).data
    loss, grad = full_gradient(loss_fn, state.params, data, inputs.participation, placement, chunk_size, mesh)
    params = jax.tree.map(lambda p, g: p - learning_rate * g.astype(p.dtype), state.params, grad)
    participants = jnp.sum(inputs.participation.astype(jnp.int32))
    model_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(state.params))
    metrics = {
        'train_loss': jnp.where(participants > 0, loss, jnp.nan),
        'grad_norm': optax.global_norm(grad),
        'participants': participants,
        'bytes_up': participants.astype(jnp.float32) * model_bytes,  # one gradient per worker
        'bytes_down': jnp.asarray(inputs.client_ids.shape[0] * model_bytes, jnp.float32),
    }
    return DataParallelState(params, state.round + 1), metrics

  return Algorithm(init, step, name='data_parallel_gd', inputs='every_client')
