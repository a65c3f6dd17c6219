"""Aggregators: pure functions from stacked client updates to one server update.

An `Aggregator` is `init(params) -> state` and `aggregate(updates, state, context) -> (update,
state)`: `updates` has leaves [C, ...] (the cohort axis first), `context.weights` [C] are the
aggregation weights (0 for dropped or padding clients), and `update` has the leaves of one client.
`streaming=True` marks aggregators that are a weighted mean of the updates, which lets the client
map keep a running sum instead of materialising the [C, ...] stack (memory flat in C).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab.transforms.base import RoundContext

PyTree = Any


class Aggregator(NamedTuple):
  init: Callable[[PyTree], PyTree]
  aggregate: Callable[[PyTree, PyTree, RoundContext], tuple[PyTree, PyTree]]
  streaming: bool = False


def weighted_mean(updates: PyTree, weights: jax.Array) -> PyTree:
  """sum_i w_i u_i / sum_i w_i over the leading axis; 0 when all weights are 0.

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C] non-negative.
  Returns:
    pytree, leaves [...].
  """
  weights = jnp.asarray(weights, jnp.float32)
  total = jnp.sum(weights)
  scale = jnp.where(total > 0, 1.0 / jnp.where(total > 0, total, 1.0), 0.0)
  scaled = weights * scale
  # A broadcast product and a sum, not tensordot: on an Explicit mesh a contraction over the
  # client-sharded axis is refused, while a reduction becomes the all-reduce it should be.
  def reduce(u):
    w = scaled.reshape((-1,) + (1,) * (u.ndim - 1))
    return jnp.sum(w * u.astype(jnp.float32), axis=0).astype(u.dtype)
  return jax.tree.map(reduce, updates)


def mean() -> Aggregator:
  """Example-weighted mean (FedAvg's aggregator). Stateless; streamable."""
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (weighted_mean(updates, ctx.weights), state),
      streaming=True,
  )
