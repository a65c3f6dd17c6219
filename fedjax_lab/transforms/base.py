"""Update transforms: pure functions from the stacked client updates to stacked client updates.

A `Transform` follows optax's shape: `init(params) -> state` and
`update(updates, state, context) -> (updates, state)`, where `updates` is a pytree whose leaves
carry the cohort axis first ([C, ...]) and `context` is the `RoundContext` of the round
(`fedjax_lab.cohort`). Norm clipping, Gaussian noise, compression and every Byzantine attack are
transforms; they compose with `chain`, applied left to right.

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

# The round's context lives in the cohort layer, below transforms and aggregators alike; re-exported
# so `fedjax_lab.transforms.RoundContext` and `transforms.base.make_context` keep working.
from fedjax_lab.cohort import (CLIENT_CONTEXT_AXES, ClientContext, RoundContext, client_contexts,
                               make_context)

PyTree = Any


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
