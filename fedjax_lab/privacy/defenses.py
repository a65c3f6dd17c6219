"""Defences against gradient inversion, as the same Transforms that training uses.

A defence is built once as a `Transform` over stacked client updates, so the update the attacker
observes and the updates the server trains on go through identical code:

  'none'      the update as is (strength ignored).
  'noise'     + N(0, strength^2) per coordinate (`transforms.gaussian_noise`).
  'clip'      scaled to L2 norm <= strength (`transforms.clip_by_client_norm`).
  'topk'      prune: keep the (1 - strength) fraction of largest-magnitude coordinates, zero the
              rest, no error feedback (`transforms.compression.topk`); strength = fraction pruned.
  'quantize'  stochastic uniform quantization to `strength` bits (`transforms.compression.quantize`).

Larger batches are the fifth defence; they are a property of the observation, not a transform.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab.transforms import compression
from fedjax_lab.transforms.base import Transform, identity, make_context
from fedjax_lab.transforms.clipping import clip_by_client_norm
from fedjax_lab.transforms.noise import gaussian_noise

PyTree = Any
DEFENSES = ('none', 'noise', 'clip', 'topk', 'quantize')


def defense_transform(name: str, strength: float, num_params: int) -> Transform:
  """The Transform of defence `name` at `strength` (see the module docstring for the meaning).

  Args:
    name: one of DEFENSES.
    strength: stddev ('noise'), clip norm ('clip'), fraction pruned in [0, 1) ('topk'), bits
      ('quantize').
    num_params: D, the model size (top-k needs it).

  Returns:
    Transform over updates with leaves [C, ...].
  """
  if name == 'none':
    return identity()
  if name == 'noise':
    return gaussian_noise(float(strength))
  if name == 'clip':
    return clip_by_client_norm(float(strength))
  if name == 'topk':
    if not 0.0 <= strength < 1.0:
      raise ValueError(f'topk strength (fraction pruned)={strength} must lie in [0, 1).')
    k = max(1, int(round((1.0 - strength) * num_params)))
    return compression.topk(k, num_params, num_clients=1, error_feedback=False)
  if name == 'quantize':
    return compression.quantize(int(strength))
  raise ValueError(f'defense={name!r} must be one of {DEFENSES}.')


def defend(update: PyTree, name: str, strength: float, rng: jax.Array) -> PyTree:
  """Applies a defence to one client's update.

  Args:
    update: pytree like params (one client).
    name, strength: see `defense_transform`.
    rng: PRNG key (noise and stochastic rounding).

  Returns:
    pytree like update: what the client would send.
  """
  num_params = sum(leaf.size for leaf in jax.tree.leaves(update))
  transform = defense_transform(name, strength, num_params)
  stacked = jax.tree.map(lambda u: u[None], update)
  ctx = make_context(jnp.ones((1,)), rng, update)
  out, _ = transform.update(stacked, transform.init(update), ctx)
  return jax.tree.map(lambda u: u[0], out)
