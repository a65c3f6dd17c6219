"""Gaussian noise on stacked client updates (local DP, or a noise defence against inversion).

Every coordinate of every client's update gets independent N(0, stddev^2) noise. Client i's noise
comes from `fold_in(rng, client_ids[i])`, so it does not depend on the cohort's order or on how
clients are placed on devices.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab.transforms.base import ClientContext, Transform, per_client_transform

PyTree = Any


def validate_stddev(stddev: float, field: str = 'config.noise.stddev') -> None:
  if not (stddev >= 0 and math.isfinite(stddev)):
    raise ValueError(f'{field}={stddev} must be a finite number >= 0.')


def add_gaussian_noise(tree: PyTree, stddev: float | jax.Array, rng: jax.Array) -> PyTree:
  """tree + N(0, stddev^2) on every coordinate (one key per leaf, split from rng).

  Args:
    tree: pytree of float arrays (any shapes).
    stddev: scalar noise standard deviation.
    rng: PRNG key.

  Returns:
    pytree like tree.
  """
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(rng, max(len(leaves), 1))
  noisy = [u + (stddev * jax.random.normal(k, u.shape, jnp.float32)).astype(u.dtype)
           for u, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, noisy)


def add_client_noise(updates: PyTree, stddev: float | jax.Array, rng: jax.Array,
                     client_ids: jax.Array) -> PyTree:
  """Adds independent N(0, stddev^2) noise to each client's update.

  Args:
    updates: pytree, leaves [C, ...].
    stddev: scalar.
    rng: the round's key for this transform.
    client_ids: [C] int global client ids (the noise of client i depends on rng and its id only).

  Returns:
    pytree, leaves [C, ...].
  """
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(client_ids)
  return jax.vmap(lambda u, k: add_gaussian_noise(u, stddev, k))(updates, keys)


def gaussian_noise(stddev: float) -> Transform:
  """Transform adding N(0, stddev^2) to every coordinate of every client's update (stateless).

  Args:
    stddev: >= 0. For local DP, noise_multiplier * clip_norm after `clip_by_client_norm`.

  Returns:
    Transform over updates with leaves [C, ...]; uses ctx.rng and ctx.client_ids. Per-client
    (client i's noise depends on the round key and its id only), so FedAvg streams it.
  """
  validate_stddev(stddev)

  def apply(update, client_ctx: ClientContext):
    # The key add_client_noise gives client i: the same draws stacked or streamed.
    return add_gaussian_noise(update, stddev, jax.random.fold_in(client_ctx.rng, client_ctx.client_id))

  return per_client_transform(apply)
