"""Shared pieces of the robust aggregators: masks, order statistics, distances, validation.

Every robust rule sees the cohort's stacked updates (pytree, leaves [C, ...]) and the weights
[C] of `RoundContext`. A client with weight 0 (dropped out, or padding the cohort to a multiple of
the device count) is *absent*: it is excluded from every order statistic and distance, never
treated as a zero vector. Inside jit the number of present clients `n` is an array, so one
compiled round serves any drop-out pattern; the static cohort size `C` bounds it.

Sorting puts absent clients last by replacing their values with +inf; counts then say which
positions are real. Pairwise distances put +inf on rows and columns of absent clients.

Placement: order statistics and distances need every client's values, so a rule first gathers the
stack (`unshard`). Inputs placed with `NamedSharding(mesh, P('clients'))` on an *Explicit* mesh
(`jax.make_mesh`'s default) are resharded to replicated, which inserts the all-gather; on an Auto
mesh or one device the call is a no-op and XLA's partitioner does the same by itself.
Transforms that return the stack put it back on its input sharding (`reshard_like`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

PyTree = Any


def _explicit_sharding(x) -> NamedSharding | None:
  """The NamedSharding in x's type when some axis is explicitly sharded, else None."""
  sharding = getattr(jax.typeof(x), 'sharding', None)
  if isinstance(sharding, NamedSharding) and any(axis is not None for axis in sharding.spec):
    return sharding
  return None


def unshard(tree: PyTree) -> PyTree:
  """Replicates every explicitly sharded leaf (an all-gather under jit); other leaves unchanged."""
  def gather(x):
    sharding = _explicit_sharding(x)
    if sharding is None:
      return x
    return jax.sharding.reshard(x, NamedSharding(sharding.mesh, PartitionSpec()))
  return jax.tree.map(gather, tree)


def reshard_like(tree: PyTree, reference: PyTree) -> PyTree:
  """Gives each leaf of `tree` the explicit sharding of the matching leaf of `reference`."""
  def place(x, ref):
    sharding = _explicit_sharding(ref)
    if sharding is None:
      return x
    return jax.sharding.reshard(x, NamedSharding(sharding.mesh, sharding.spec))
  return jax.tree.map(place, tree, reference)


def present(weights: jax.Array) -> jax.Array:
  """[C] bool: True for clients that take part (weight > 0)."""
  return jnp.asarray(weights) > 0


def num_present(weights: jax.Array) -> jax.Array:
  """Scalar int32: how many clients have weight > 0."""
  return jnp.sum(present(weights)).astype(jnp.int32)


def cohort_size(updates: PyTree) -> int:
  """Static C: the leading dimension shared by every leaf of `updates`."""
  leaves = jax.tree.leaves(updates)
  if not leaves:
    raise ValueError('updates has no leaves; a robust aggregator needs stacked client updates.')
  sizes = {leaf.shape[0] for leaf in leaves}
  if len(sizes) != 1:
    raise ValueError(f'updates leaves disagree on the client axis: sizes {sorted(sizes)}.')
  return sizes.pop()


def sort_present(values: jax.Array, mask: jax.Array, *others: jax.Array):
  """Sorts `values` [C, ...] along the client axis with absent clients (mask [C] False) last.

  Absent values become +inf, so the n present values fill positions 0..n-1 in ascending order.
  `others` ([C, ...] or [C]) are permuted alongside (broadcast to values.shape). The sort is
  stable, so ties keep client order.

  Returns:
    sorted values [C, ...] (float32), then each of `others` permuted the same way.
  """
  values = values.astype(jnp.float32)
  expand = lambda a: jnp.broadcast_to(a.reshape(a.shape + (1,) * (values.ndim - a.ndim)), values.shape)
  keys = jnp.where(expand(mask), values, jnp.inf)
  if not others:
    return jnp.sort(keys, axis=0)
  out = jax.lax.sort((keys,) + tuple(expand(o) for o in others), dimension=0, num_keys=1,
                     is_stable=True)
  return out if len(out) > 1 else out[0]


def rank_mask(num_rows: int, start, stop, ndim: int) -> jax.Array:
  """[C, 1, ...] bool, True for rows with start <= index < stop (start, stop may be traced)."""
  index = jnp.arange(num_rows).reshape((num_rows,) + (1,) * (ndim - 1))
  return (index >= start) & (index < stop)


def pairwise_sq_distances(updates: PyTree) -> jax.Array:
  """[C, C] squared Euclidean distances ||u_i - u_j||^2 between flattened client updates.

  Computed from differences (not the Gram identity, which cancels badly when updates share a
  large common component), one row at a time so memory stays O(C * D).

  Args:
    updates: pytree, leaves [C, ...].
  Returns:
    [C, C] float32, symmetric, zero diagonal.
  """
  def leaf_distances(leaf):
    x = leaf.reshape(leaf.shape[0], -1).astype(jnp.float32)
    return jax.lax.map(lambda row: jnp.sum(jnp.square(x - row), axis=1), x)

  return sum(leaf_distances(leaf) for leaf in jax.tree.leaves(updates))


def sq_norms(updates: PyTree) -> jax.Array:
  """[C] squared Euclidean norms of the flattened client updates."""
  return sum(jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1).astype(jnp.float32)), axis=1)
             for leaf in jax.tree.leaves(updates))


def combine(updates: PyTree, coefficients: jax.Array) -> PyTree:
  """sum_i coefficients[i] * u_i: leaves [C, ...] -> [...] (in each leaf's dtype)."""
  coefficients = coefficients.astype(jnp.float32)
  return jax.tree.map(
      lambda u: jnp.tensordot(coefficients, u.astype(jnp.float32), axes=1).astype(u.dtype), updates)


def mix(updates: PyTree, matrix: jax.Array) -> PyTree:
  """Row-mixes the cohort: out_i = sum_j matrix[i, j] * u_j; leaves [C, ...] -> [C, ...]."""
  matrix = matrix.astype(jnp.float32)
  return jax.tree.map(
      lambda u: jnp.tensordot(matrix, u.astype(jnp.float32), axes=1).astype(u.dtype), updates)


def scale_rows(updates: PyTree, scale: jax.Array) -> PyTree:
  """u_i * scale[i]: leaves [C, ...] -> [C, ...] (in each leaf's dtype)."""
  scale = scale.astype(jnp.float32)
  return jax.tree.map(
      lambda u: (u.astype(jnp.float32) * scale.reshape((-1,) + (1,) * (u.ndim - 1))).astype(u.dtype),
      updates)


def safe_divide(numerator, denominator):
  """numerator / denominator, 0 where the denominator is 0."""
  ok = denominator != 0
  return jnp.where(ok, numerator / jnp.where(ok, denominator, 1), 0)


def mean_weights(weights: jax.Array, weighted: bool) -> jax.Array:
  """[C] weights normalised to sum 1 over present clients: ctx.weights, or uniform."""
  weights = jnp.asarray(weights, jnp.float32)
  raw = jnp.where(present(weights), weights if weighted else 1.0, 0.0)
  return safe_divide(raw, jnp.sum(raw))


# ----------------------------------------------------------------------------- validation


def check_int(value, field: str, minimum: int = 0) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f'{field}={value!r} must be an integer >= {minimum}.')
  return value


def check_positive(value, field: str) -> float:
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
    raise ValueError(f'{field}={value!r} must be a number > 0.')
  return float(value)


def breakdown_check(condition: Callable[[int], str | None]) -> Callable[[int | None], None]:
  """Wraps `condition(num_clients) -> error message or None` as a raising check."""
  def check(num_clients):
    if num_clients is None:
      return
    message = condition(num_clients)
    if message:
      raise ValueError(message)
  return check


def validated(check: Callable[[int], None], num_clients: int | None, aggregate_fn):
  """Checks the breakdown condition now (if num_clients is known) and on every trace.

  Args:
    check: raises ValueError for a cohort size that violates the rule's condition.
    num_clients: the cohort size given at construction (clients_per_round), or None.
    aggregate_fn: the rule's `fn(updates, state, ctx)`; its first argument has leaves [C, ...].
  Returns:
    `aggregate_fn` wrapped so the static C of its input is checked when traced.
  """
  if num_clients is not None:
    check_int(num_clients, 'clients_per_round', 1)
    check(num_clients)

  def wrapped(updates, state, ctx):
    check(cohort_size(updates))
    return aggregate_fn(updates, state, ctx)

  return wrapped


def sq_distances_to(updates: PyTree, point: PyTree) -> jax.Array:
  """[C] squared distances ||u_i - point||^2; updates leaves [C, ...], point leaves [...]."""
  return sum(
      jnp.sum(jnp.square((u.astype(jnp.float32) - p.astype(jnp.float32)[None]).reshape(u.shape[0], -1)),
              axis=1)
      for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(point)))


def clip_factors(sq_norm: jax.Array, radius) -> jax.Array:
  """min(1, radius / ||x||) from squared norms [C] (1 where the norm is 0)."""
  norm = jnp.sqrt(sq_norm)
  return jnp.where(norm > radius, radius / jnp.where(norm > 0, norm, 1.0), 1.0)
