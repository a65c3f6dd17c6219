"""Update transforms: pure functions from the stacked client updates to stacked client updates.

A `Transform` follows optax's shape: `init(params) -> state` and
`update(updates, state, context) -> (updates, state)`, where `updates` is a pytree whose leaves
carry the cohort axis first ([C, ...]) and `context` is the `RoundContext` of the round. Norm
clipping, Gaussian noise, compression and every Byzantine attack are transforms; they compose
with `chain`, applied left to right.

Per-client transforms. A transform that acts on each client's update alone (no statistic of the
cohort, state updated from the `RoundContext` only) also carries a `PerClient` form: `apply(update,
client_context)` on one client's unstacked update. `fedjax_lab.algorithms.fedavg` fuses it into the
client function and streams a running sum instead of materialising the [C, ...] stack. Build such
transforms with `per_client_transform`, whose stacked `update` is `vmap` of the same `apply`, so
the two paths agree by construction. Norm clipping, per-client Gaussian noise, stochastic
quantization and top-k without error feedback are per-client; cross-client rules (top-k's error
feedback table, nearest-neighbour mixing, ARC, most attacks) are not.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


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


class PerClient(NamedTuple):
  """A transform written for one client (see module docstring).

  Attributes:
    apply: `(update, client_context) -> update`, leaves [...] -> [...].
    next_state: `(state, round_context, update_shapes) -> state`: the state after the round,
      computed without the updates' values (e.g. a compressor's bytes sent from the participation
      weights); `update_shapes` is one client's update as a pytree of `jax.ShapeDtypeStruct`.
  """

  apply: Callable[[PyTree, ClientContext], PyTree]
  next_state: Callable[[PyTree, RoundContext, PyTree], PyTree]


class Transform(NamedTuple):
  """A pair of pure functions over stacked client updates (see module docstring).

  `per_client` is set for transforms with no cross-client dependency (they stream).
  """

  init: Callable[[PyTree], PyTree]
  update: Callable[[PyTree, PyTree, RoundContext], tuple[PyTree, PyTree]]
  per_client: PerClient | None = None


def one_client_shapes(updates: PyTree) -> PyTree:
  """Shapes and dtypes of one client's update from the stacked updates (leaves [C, ...] -> [...])."""
  return jax.tree.map(lambda u: jax.ShapeDtypeStruct(u.shape[1:], u.dtype), updates)


def per_client_transform(apply: Callable[[PyTree, ClientContext], PyTree],
                         init: Callable[[PyTree], PyTree] = lambda params: (),
                         next_state: Callable[[PyTree, RoundContext, PyTree], PyTree] = (
                             lambda state, ctx, update_shapes: state),
                         ) -> Transform:
  """A Transform acting on each client alone; its stacked `update` is `vmap(apply)`.

  Args:
    apply: `(update, client_context) -> update` for one client (leaves [...]).
    init: `params -> state`.
    next_state: `(state, round_context, update_shapes) -> state`, independent of the updates' values.

  Returns:
    Transform with `per_client` set; `update` maps leaves [C, ...] to [C, ...].
  """

  def update(updates, state, ctx: RoundContext):
    out = jax.vmap(apply, in_axes=(0, CLIENT_CONTEXT_AXES))(updates, client_contexts(ctx))
    return out, next_state(state, ctx, one_client_shapes(updates))

  return Transform(init, update, PerClient(apply, next_state))


def stateless(fn: Callable[[PyTree, RoundContext], PyTree]) -> Transform:
  """Wraps `fn(updates, context) -> updates` as a Transform with empty state."""
  return Transform(init=lambda params: (), update=lambda u, s, ctx: (fn(u, ctx), s))


def identity() -> Transform:
  return per_client_transform(lambda update, client_ctx: update)


def chain(*transforms: Transform) -> Transform:
  """Applies transforms left to right; each gets its own state and an independent rng.

  The chain is per-client (streams) when every member is.
  """

  def init(params):
    return tuple(t.init(params) for t in transforms)

  def update(updates, state, ctx: RoundContext):
    new_state = []
    keys = jax.random.split(ctx.rng, max(len(transforms), 1))
    for t, s, key in zip(transforms, state, keys):
      updates, s = t.update(updates, s, ctx._replace(rng=key))
      new_state.append(s)
    return updates, tuple(new_state)

  if not all(t.per_client is not None for t in transforms):
    return Transform(init, update)

  def apply(one_update, client_ctx: ClientContext):
    # The same key split as the stacked update, so both paths draw identical noise.
    keys = jax.random.split(client_ctx.rng, max(len(transforms), 1))
    for t, key in zip(transforms, keys):
      one_update = t.per_client.apply(one_update, client_ctx._replace(rng=key))
    return one_update

  def next_state(state, ctx: RoundContext, update_shapes):
    keys = jax.random.split(ctx.rng, max(len(transforms), 1))
    return tuple(t.per_client.next_state(s, ctx._replace(rng=key), update_shapes)
                 for t, s, key in zip(transforms, state, keys))

  return Transform(init, update, PerClient(apply, next_state))
