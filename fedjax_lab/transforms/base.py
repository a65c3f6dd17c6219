"""Update transforms: pure functions from the stacked client updates to stacked client updates.

A `Transform` follows optax's shape: `init(params) -> state` and
`update(updates, state, context) -> (updates, state)`, where `updates` is a pytree whose leaves
carry the cohort axis first ([C, ...]) and `context` is the `RoundContext` of the round. Norm
clipping, Gaussian noise, compression and every Byzantine attack are transforms; they compose
with `chain`, applied left to right.
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


class Transform(NamedTuple):
  """A pair of pure functions over stacked client updates (see module docstring)."""

  init: Callable[[PyTree], PyTree]
  update: Callable[[PyTree, PyTree, RoundContext], tuple[PyTree, PyTree]]


def stateless(fn: Callable[[PyTree, RoundContext], PyTree]) -> Transform:
  """Wraps `fn(updates, context) -> updates` as a Transform with empty state."""
  return Transform(init=lambda params: (), update=lambda u, s, ctx: (fn(u, ctx), s))


def identity() -> Transform:
  return stateless(lambda updates, ctx: updates)


def chain(*transforms: Transform) -> Transform:
  """Applies transforms left to right; each gets its own state and an independent rng."""

  def init(params):
    return tuple(t.init(params) for t in transforms)

  def update(updates, state, ctx: RoundContext):
    new_state = []
    keys = jax.random.split(ctx.rng, max(len(transforms), 1))
    for t, s, key in zip(transforms, state, keys):
      updates, s = t.update(updates, s, ctx._replace(rng=key))
      new_state.append(s)
    return updates, tuple(new_state)

  return Transform(init, update)
