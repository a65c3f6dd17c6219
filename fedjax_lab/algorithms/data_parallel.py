"""Synchronous data-parallel gradient descent ("MapReduce"), and the least-squares worked example.

The n examples are split into m shards, one per worker. In every iteration each worker computes the
gradient of the loss summed over its shard (map), the sums are added (reduce) and divided by n, and
the server takes one step. The result is exactly full-batch gradient descent on

  f(w) = 1/n sum_j loss(w; x_j, y_j),

whatever m is; only the wall-clock changes (see `fedjax_lab.systems`). Two placements:

  'client_map'  the engine's `weighted_sum_clients` (vmap / scan / chunked on one device, or
                shard_map across a mesh): the reference route every other algorithm takes.
  'shard_map'   an explicit `jax.shard_map` over the mesh's 'clients' axis: each device computes
                the gradients of its workers, one `psum` adds them (the all-reduce of the
                systems model).

Least squares: f(w) = 1/(2n) ||X w - y||^2, gradient X^T (X w - y) / n, Lipschitz constant of the
gradient L = lambda_max(X^T X / n); gradient descent with step 1/L converges to the solution of
numpy.linalg.lstsq.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.clients import placement as placement_lib

PyTree = Any
LossFn = Callable[[PyTree, jax.Array, jax.Array, jax.Array], jax.Array]
PLACEMENTS = ('client_map', 'shard_map')


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


class Shards(NamedTuple):
  """Data split over m workers, padded to equal size.

  Attributes:
    x: [m, b, ...] examples of each worker.
    y: [m, b] targets.
    mask: [m, b] bool, True on real examples.
  """

  x: jax.Array
  y: jax.Array
  mask: jax.Array


def shard_data(x, y, num_workers: int) -> Shards:
  """Splits x [n, ...], y [n] into `num_workers` contiguous shards of ceil(n / m) rows (padded).

  Raises ValueError unless 1 <= num_workers <= n.
  """
  n = int(np.shape(y)[0])
  if not isinstance(num_workers, (int, np.integer)) or not 1 <= num_workers <= n:
    raise ValueError(f'num_workers={num_workers} must be an integer in [1, n={n}].')
  size = -(-n // num_workers)
  pad = size * num_workers - n
  x = np.concatenate([np.asarray(x), np.zeros((pad,) + np.shape(x)[1:], np.asarray(x).dtype)])
  y = np.concatenate([np.asarray(y), np.zeros((pad,), np.asarray(y).dtype)])
  mask = np.arange(size * num_workers) < n
  reshape = lambda a: jnp.asarray(a.reshape((num_workers, size) + a.shape[1:]))
  return Shards(reshape(x), reshape(y), reshape(mask))


def replicate_data(x, y, num_workers: int) -> Shards:
  """Every worker holds all n examples (each computes the full gradient): leaves [m, n, ...]."""
  if num_workers < 1:
    raise ValueError(f'num_workers={num_workers} must be >= 1.')
  tile = lambda a: jnp.broadcast_to(jnp.asarray(a), (num_workers,) + np.shape(a))
  return Shards(tile(x), tile(y), jnp.ones((num_workers, np.shape(y)[0]), bool))


def worker_weights(shards: Shards) -> jax.Array:
  """[m] each worker's share of the real examples (sums to 1)."""
  counts = jnp.sum(shards.mask, axis=1).astype(jnp.float32)
  return counts / jnp.sum(counts)


# ----------------------------------------------------------------------------- the algorithm


class DataParallelState(NamedTuple):
  """Attributes: params (pytree); iteration: [] int32 iterations completed."""

  params: PyTree
  iteration: jax.Array


def _worker_loss_and_grad(loss_fn: LossFn):
  def one(params, shard):
    x, y, mask = shard
    return jax.value_and_grad(loss_fn)(params, x, y, mask)
  return one


def full_gradient(loss_fn: LossFn, params: PyTree, shards: Shards, placement: str = 'client_map',
                  strategy: str = 'auto', mesh=None) -> tuple[jax.Array, PyTree]:
  """Loss and gradient of the mean loss over all real examples, computed worker by worker.

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> mean loss over the real rows.
    params: pytree.
    shards: Shards with leaves [m, b, ...].
    placement: 'client_map' or 'shard_map' (see module docstring).
    strategy: the engine's placement strategy for 'client_map'.
    mesh: optional mesh with a 'clients' axis (required for 'shard_map' on more than one device).

  Returns:
    (loss scalar, gradient pytree like params).
  """
  weights = worker_weights(shards)
  one = _worker_loss_and_grad(loss_fn)
  if placement == 'client_map':
    return placement_lib.weighted_sum_clients(one, params, tuple(shards), weights, strategy=strategy, mesh=mesh)
  return _psum_gradient(one, params, shards, weights, mesh)


def _psum_gradient(one, params, shards: Shards, weights: jax.Array, mesh):
  """Each device: sum_i w_i grad_i over its workers; then psum over the 'clients' axis."""
  devices = placement_lib.num_mesh_clients(mesh)
  if devices == 1:
    losses, grads = jax.vmap(one, in_axes=(None, 0))(params, tuple(shards))
    return jnp.dot(weights, losses), jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1), grads)
  pad = (-weights.shape[0]) % devices  # zero-weight workers fill the last device
  padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]),
                        (tuple(shards), weights))

  def body(params, local_shards, local_weights):
    # Replicated params differentiated inside shard_map must be marked device-varying, or their
    # gradient comes back already summed over devices (shard_map's transpose of a replicated input
    # is a psum).
    params = jax.tree.map(lambda p: jax.lax.pcast(p, placement_lib.CLIENT_AXIS, to='varying'), params)
    losses, grads = jax.vmap(one, in_axes=(None, 0))(params, local_shards)
    partial = (jnp.dot(local_weights, losses),
               jax.tree.map(lambda g: jnp.tensordot(local_weights, g, axes=1), grads))
    return jax.lax.psum(partial, placement_lib.CLIENT_AXIS)

  return jax.shard_map(body, mesh=mesh, in_specs=(P(), P(placement_lib.CLIENT_AXIS), P(placement_lib.CLIENT_AXIS)),
                       out_specs=P())(params, *padded)


def data_parallel_gd(loss_fn: LossFn, learning_rate: float, placement: str = 'client_map',
                     strategy: str = 'auto', mesh=None) -> Algorithm:
  """Synchronous data-parallel gradient descent: w <- w - lr * (1/n) sum_i grad_i.

  Args:
    loss_fn: (params, x [b, ...], y [b], mask [b]) -> mean loss over the real rows, e.g.
      `least_squares_loss` or `functools.partial(models.batch_loss, model)`.
    learning_rate: step size > 0 (1/L for least squares).
    placement: 'client_map' (the engine's weighted sum) or 'shard_map' (explicit psum).
    strategy: engine placement strategy for 'client_map' ('auto', 'vmap', 'scan', 'chunked').
    mesh: optional mesh with a 'clients' axis.

  Returns:
    Algorithm with init(params) -> DataParallelState and
    step(state, shards: Shards, rng) -> (state, {'loss': loss before the step, 'grad_norm'}).
  """
  if not learning_rate > 0:
    raise ValueError(f'learning_rate={learning_rate} must be > 0.')
  if placement not in PLACEMENTS:
    raise ValueError(f'placement={placement!r} must be one of {PLACEMENTS}.')
  placement_lib.resolve_strategy(strategy)

  def init(params):
    return DataParallelState(params, jnp.zeros((), jnp.int32))

  def step(state, shards, rng=None):
    del rng  # full-batch gradient descent is deterministic
    loss, grad = full_gradient(loss_fn, state.params, Shards(*shards), placement, strategy, mesh)
    params = jax.tree.map(lambda p, g: p - learning_rate * g.astype(p.dtype), state.params, grad)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grad)))
    return DataParallelState(params, state.iteration + 1), {'loss': loss, 'grad_norm': grad_norm}

  return Algorithm(init, step, name=f'data_parallel_gd[{placement}]')


def place_shards(shards: Shards, mesh) -> Shards:
  """Puts the worker axis of every leaf on the mesh's 'clients' axis (no-op without a mesh)."""
  if mesh is None:
    return shards
  devices = placement_lib.num_mesh_clients(mesh)
  if shards.y.shape[0] % devices:
    return shards  # uneven: let shard_map pad (it reshards under Auto axis types)
  sharding = NamedSharding(mesh, P(placement_lib.CLIENT_AXIS))
  return Shards(*(jax.device_put(a, sharding) for a in shards))


def run_iterations(algorithm: Algorithm, params: PyTree, shards: Shards, num_iterations: int):
  """Runs `num_iterations` steps under one jitted lax.scan.

  Returns:
    (final state, metrics dict of [T] arrays; 'loss'[t] is the loss before step t).
  """
  if num_iterations < 0:
    raise ValueError(f'num_iterations={num_iterations} must be >= 0.')

  @jax.jit
  def scan(state, shards):
    return jax.lax.scan(lambda s, _: algorithm.step(s, shards, None), state, None, length=num_iterations)

  return scan(algorithm.init(params), tuple(shards))
