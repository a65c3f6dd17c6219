"""The cohort layer: what every rule over a round's stacked client updates shares.

Aggregators (`fedjax_lab.aggregators`), update transforms (`fedjax_lab.transforms`) and attacks
(`fedjax_lab.attacks`) all see the cohort's updates stacked along a leading client axis (pytree,
leaves [C, ...]) with the round's `RoundContext`. This module holds that context and the helpers
the three packages share, so the dependency goes one way (all three import this module, it imports
none of them) and no package reaches into another's private module.

  context     RoundContext, ClientContext (one client's row of it), make_context, client_contexts.
  placement   unshard / reshard_like (below).
  masks       present, num_present, mean_weights: a client with weight 0 (dropped out, or padding
              the cohort to a multiple of the device count) is *absent*: excluded from every sum,
              order statistic and distance, never treated as a zero vector. Inside jit the number
              of present clients is an array, so one compiled round serves any drop-out pattern;
              the static cohort size C (`cohort_size`) bounds it.
  sums        combine (sum_i c_i u_i), mix (row-mixing), scale_rows, safe_divide.
  geometry    sq_norms, sq_distances_to, pairwise_sq_distances, clip_factors (callers mask the
              rows and columns of absent clients).
  validation  check_int, check_positive, breakdown_check: constructor checks naming the field.

Placement: order statistics and distances need every client's values, so a rule first gathers the
stack (`unshard`). Inputs placed with `NamedSharding(mesh, P('clients'))` on an *Explicit* mesh
(`jax.make_mesh`'s default) are resharded to replicated, which inserts the all-gather; on an Auto
mesh or one device the call is a no-op and XLA's partitioner does the same by itself.
Transforms that return the stack put it back on its input sharding (`reshard_like`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

PyTree = Any


# ---------------------------------------------------------------------- context


class RoundContext(NamedTuple):
  """What a transform or aggregator may know about the round. All arrays; jit-friendly.

  Attributes:
    weights: [C] float32 aggregation weights (example counts times participation; 0 for clients
      that dropped out or pad the cohort).
    rng: a PRNG key for this transform/aggregator in this round.
    params: the server's current parameters (pytree, unstacked).
    client_ids: [C] int32 global ids of the cohort's clients (for per-client state).
    byzantine: [C] bool, True for clients an attack controls.
    round: scalar int32 round index.
  """

  weights: jax.Array
  rng: jax.Array
  params: PyTree
  client_ids: jax.Array
  byzantine: jax.Array
  round: jax.Array


def make_context(weights, rng, params, client_ids=None, byzantine=None, round_index=0) -> RoundContext:
  """Builds a RoundContext, filling optional fields with neutral values ([C] shaped)."""
  weights = jnp.asarray(weights, jnp.float32)
  num = weights.shape[0]
  if client_ids is None:
    client_ids = jnp.arange(num, dtype=jnp.int32)
  if byzantine is None:
    byzantine = jnp.zeros((num,), bool)
  return RoundContext(weights, rng, params, jnp.asarray(client_ids, jnp.int32),
                      jnp.asarray(byzantine, bool), jnp.asarray(round_index, jnp.int32))


class ClientContext(NamedTuple):
  """What a per-client transform may know about one client (one row of `RoundContext`).

  Attributes:
    weight: [] float32 aggregation weight of this client.
    rng: the transform's key for the round, the same for every client (fold in `client_id` for
      per-client draws, as the stacked transforms do).
    params: the server's current parameters (pytree, unstacked).
    client_id: [] int32 global id.
    byzantine: [] bool.
    round: [] int32.
  """

  weight: jax.Array
  rng: jax.Array
  params: PyTree
  client_id: jax.Array
  byzantine: jax.Array
  round: jax.Array


# vmap axes of a stacked ClientContext: per-client fields mapped, round-level fields shared.
CLIENT_CONTEXT_AXES = ClientContext(weight=0, rng=None, params=None, client_id=0, byzantine=0, round=None)


def client_contexts(ctx: RoundContext) -> ClientContext:
  """The RoundContext as a ClientContext whose per-client fields are [C] (map with CLIENT_CONTEXT_AXES)."""
  return ClientContext(ctx.weights, ctx.rng, ctx.params, ctx.client_ids, ctx.byzantine, ctx.round)


# -------------------------------------------------------------------- placement


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


# ------------------------------------------------------------ masks and weights


def present(weights: jax.Array) -> jax.Array:
  """[C] bool: True for clients that take part (weight > 0)."""
  return jnp.asarray(weights) > 0


def num_present(weights: jax.Array) -> jax.Array:
  """Scalar int32: how many clients have weight > 0."""
  return jnp.sum(present(weights)).astype(jnp.int32)


def finite_rows(updates: PyTree) -> jax.Array:
  """[C] bool: True for clients whose update holds no NaN or Inf (leaves [C, ...])."""
  return jax.tree.reduce(
      jnp.logical_and,
      [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in jax.tree.leaves(updates)])


def masked_sum(updates: PyTree, coefficients: jax.Array) -> PyTree:
  """sum_i c_i u_i over the rows with c_i != 0, in float32; leaves [C, ...] -> [...].

  A row whose coefficient is 0 adds exactly 0 even when it holds NaN or Inf (`where`, not a
  product). A broadcast product and a sum, not tensordot: on an Explicit mesh a contraction over the
  client-sharded axis is refused, while a reduction becomes the all-reduce it should be. Stacked
  and streaming forms both sum through this function, so they agree bit for bit.

  Args:
    updates: pytree, leaves [C, ...].
    coefficients: [C].
  Returns:
    pytree, float32 leaves [...].
  """
  coefficients = jnp.asarray(coefficients, jnp.float32)

  def reduce(u):
    c = coefficients.reshape((-1,) + (1,) * (u.ndim - 1))
    return jnp.sum(jnp.where(c != 0, c * u.astype(jnp.float32), 0.0), axis=0)

  return jax.tree.map(reduce, updates)


def cohort_size(updates: PyTree) -> int:
  """Static C: the leading dimension shared by every leaf of `updates`."""
  leaves = jax.tree.leaves(updates)
  if not leaves:
    raise ValueError('updates has no leaves; a cohort rule needs stacked client updates.')
  sizes = {leaf.shape[0] for leaf in leaves}
  if len(sizes) != 1:
    raise ValueError(f'updates leaves disagree on the client axis: sizes {sorted(sizes)}.')
  return sizes.pop()


def safe_divide(numerator, denominator):
  """numerator / denominator, 0 where the denominator is 0."""
  ok = denominator != 0
  return jnp.where(ok, numerator / jnp.where(ok, denominator, 1), 0)


def mean_weights(weights: jax.Array, weighted: bool) -> jax.Array:
  """[C] weights normalised to sum 1 over present clients: ctx.weights, or uniform."""
  weights = jnp.asarray(weights, jnp.float32)
  raw = jnp.where(present(weights), weights if weighted else 1.0, 0.0)
  return safe_divide(raw, jnp.sum(raw))


# ------------------------------------------------------------ sums and geometry


def combine(updates: PyTree, coefficients: jax.Array) -> PyTree:
  """sum_i coefficients[i] * u_i over rows with a nonzero coefficient: leaves [C, ...] -> [...]
  (in each leaf's dtype). A row with coefficient 0 adds exactly 0 whatever it holds."""
  coefficients = jnp.asarray(coefficients, jnp.float32)
  return contract(zero_rows(updates, coefficients != 0), coefficients)


def zero_rows(updates: PyTree, keep: jax.Array) -> PyTree:
  """Rows with keep [C] False replaced by exact zeros (`where`); leaves [C, ...] -> [C, ...].

  Loops whose excluded rows do not change (Weiszfeld, centered clipping) clean the stack once
  and then `contract` it, which XLA runs as a matrix-vector product.
  """
  return jax.tree.map(
      lambda u: jnp.where(keep.reshape((-1,) + (1,) * (u.ndim - 1)), u, jnp.zeros((), u.dtype)), updates)


def contract(updates: PyTree, coefficients: jax.Array) -> PyTree:
  """sum_i coefficients[i] * u_i by tensordot: only for stacks whose unused rows are exact zeros
  (`zero_rows`) and coefficients that are finite. Leaves [C, ...] -> [...] (each leaf's dtype)."""
  coefficients = jnp.asarray(coefficients, jnp.float32)
  return jax.tree.map(
      lambda u: jnp.tensordot(coefficients, u.astype(jnp.float32), axes=1).astype(u.dtype), updates)


def mix(updates: PyTree, matrix: jax.Array) -> PyTree:
  """Row-mixes the cohort: out_i = sum_j matrix[i, j] * u_j; leaves [C, ...] -> [C, ...].

  A client j whose column is all zero (absent) is zeroed before the product, so garbage in its
  slot (NaN, Inf) cannot reach any output row.
  """
  matrix = matrix.astype(jnp.float32)
  used = jnp.any(matrix != 0, axis=0)

  def mix_leaf(u):
    kept = jnp.where(used.reshape((-1,) + (1,) * (u.ndim - 1)), u.astype(jnp.float32), 0.0)
    return jnp.tensordot(matrix, kept, axes=1).astype(u.dtype)

  return jax.tree.map(mix_leaf, updates)


def scale_rows(updates: PyTree, scale: jax.Array) -> PyTree:
  """u_i * scale[i]: leaves [C, ...] -> [C, ...] (in each leaf's dtype)."""
  scale = scale.astype(jnp.float32)
  return jax.tree.map(
      lambda u: (u.astype(jnp.float32) * scale.reshape((-1,) + (1,) * (u.ndim - 1))).astype(u.dtype),
      updates)


def sq_norms(updates: PyTree) -> jax.Array:
  """[C] squared Euclidean norms of the flattened client updates."""
  return sum(jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1).astype(jnp.float32)), axis=1)
             for leaf in jax.tree.leaves(updates))


def sq_distances_to(updates: PyTree, point: PyTree) -> jax.Array:
  """[C] squared distances ||u_i - point||^2; updates leaves [C, ...], point leaves [...]."""
  return sum(
      jnp.sum(jnp.square((u.astype(jnp.float32) - p.astype(jnp.float32)[None]).reshape(u.shape[0], -1)),
              axis=1)
      for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(point)))


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


def clip_factors(sq_norm: jax.Array, radius) -> jax.Array:
  """min(1, radius / ||x||) from squared norms [C] (1 where the norm is 0).

  A non-finite norm (NaN or Inf in x, or a squared norm beyond float32's range) gives factor 0:
  such a vector has no direction to keep, so it is clipped to nothing. Multiply with `where`
  (`masked_sum`), since 0 * inf is NaN.
  """
  norm = jnp.sqrt(sq_norm)
  factor = jnp.where(norm > radius, radius / jnp.where(norm > 0, norm, 1.0), 1.0)
  return jnp.where(jnp.isfinite(norm), factor, 0.0)


# ------------------------------------------------------------------- validation


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
