"""Per-client L2 norm clipping of stacked updates (the first half of client-level DP).

Each client's whole update (all leaves together, as one vector) is scaled by
min(1, clip_norm / ||u_i||_2), so every client's contribution to a sum has norm at most
`clip_norm` (Abadi et al. 2016 per example; McMahan et al. 2018 per client).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab.transforms.base import ClientContext, Transform, per_client_transform

PyTree = Any


def validate_clip_norm(clip_norm: float, field: str = 'config.dp.clip_norm') -> None:
  if not (clip_norm > 0 and math.isfinite(clip_norm)):
    raise ValueError(f'{field}={clip_norm} must be a finite number > 0.')


def client_norms(updates: PyTree) -> jax.Array:
  """Global L2 norm of each client's update.

  Args:
    updates: pytree, leaves [C, ...].

  Returns:
    [C] float32 norms.
  """
  squares = [jnp.sum(jnp.square(u.astype(jnp.float32)).reshape(u.shape[0], -1), axis=1)
             for u in jax.tree.leaves(updates)]
  return jnp.sqrt(sum(squares))


def clip_updates(updates: PyTree, clip_norm: float | jax.Array) -> tuple[PyTree, jax.Array]:
  """Scales each client's update to L2 norm at most clip_norm.

  Args:
    updates: pytree, leaves [C, ...].
    clip_norm: scalar C > 0.

  Returns:
    (clipped updates with leaves [C, ...], norms [C] before clipping).
  """
  norms = client_norms(updates)
  # A zero update stays zero; the where keeps the division finite.
  scale = jnp.minimum(1.0, clip_norm / jnp.where(norms > 0, norms, 1.0))
  clipped = jax.tree.map(
      lambda u: (u * scale.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype)), updates)
  return clipped, norms


def clip_one(update: PyTree, clip_norm: float | jax.Array) -> PyTree:
  """Scales one client's update (all leaves as one vector) to L2 norm at most clip_norm.

  Args:
    update: pytree, leaves [...] (one client, unstacked).
    clip_norm: scalar C > 0.

  Returns:
    pytree like update.
  """
  stacked, _ = clip_updates(jax.tree.map(lambda u: u[None], update), clip_norm)
  return jax.tree.map(lambda u: u[0], stacked)


def clip_by_client_norm(clip_norm: float) -> Transform:
  """Transform clipping every client's update to L2 norm <= clip_norm (stateless, per-client).

  Args:
    clip_norm: C > 0.

  Returns:
    Transform over updates with leaves [C, ...]; per-client, so FedAvg streams it.
  """
  validate_clip_norm(clip_norm)

  def apply(update, client_ctx: ClientContext):
    del client_ctx
    return clip_one(update, clip_norm)

  return per_client_transform(apply)
