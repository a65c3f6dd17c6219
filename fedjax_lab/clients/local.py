"""One client's local training, written for a single client; placement maps it over a cohort.

`local_sgd` returns a pure function

    client_update(params, client_data, rng, correction=None) -> ClientOutput

that runs `local_epochs` passes over the client's real examples in shuffled mini-batches of
`batch_size` with an optax optimizer, as one `lax.scan` over a fixed number of steps. Clients are
padded to `max_examples` rows, so every client runs ceil(max_examples / batch_size) steps per epoch;
steps whose batch holds no real example leave the parameters and optimizer state untouched. The
shapes never depend on a client's size, so one compiled program serves every cohort.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab.clients.vma import match_vma
from fedjax_lab.models import models as models_lib

PyTree = Any


class ClientData(NamedTuple):
  """One client's padded examples: x [M, ...], y [M], num_examples [] int32."""

  x: jax.Array
  y: jax.Array
  num_examples: jax.Array


class ClientOutput(NamedTuple):
  """What a client sends back.

  Attributes:
    delta: pytree like params: local_params - global_params (the model update).
    loss: [] mean training loss over the client's real examples and steps.
    num_steps: [] int32 number of optimizer steps that touched real examples.
  """

  delta: PyTree
  loss: jax.Array
  num_steps: jax.Array


def steps_per_epoch(max_examples: int, batch_size: int) -> int:
  """Mini-batch steps in one padded epoch (batch_size <= 0 means one full batch)."""
  if batch_size <= 0 or batch_size >= max_examples:
    return 1
  return math.ceil(max_examples / batch_size)


def validate_local_args(local_epochs: int, batch_size: int, max_examples: int) -> None:
  if local_epochs < 1:
    raise ValueError(f'config.algorithm.local_epochs={local_epochs} must be >= 1.')
  if batch_size == 0 or batch_size < -1:
    raise ValueError(
        f'config.algorithm.batch_size={batch_size} must be positive, or -1 for one full batch per step.')
  if max_examples < 1:
    raise ValueError(f'max_examples={max_examples}: every client needs room for at least one example.')


def _epoch_batches(rng, num_examples, max_examples: int, batch_size: int):
  """Shuffled batch indices [S, B] and masks [S, B]; real examples first in random order."""
  num_steps = steps_per_epoch(max_examples, batch_size)
  batch = max_examples if num_steps == 1 else batch_size
  real = jnp.arange(max_examples) < num_examples
  # Real rows get a uniform key in [0, 1), padding rows 2.0: sorting puts real rows first, shuffled.
  keys = jnp.where(real, jax.random.uniform(rng, (max_examples,)), 2.0)
  order = jnp.argsort(keys)
  total = num_steps * batch
  order = jnp.pad(order, (0, total - max_examples))
  positions = jnp.arange(total)
  mask = positions < num_examples
  return order.reshape(num_steps, batch), mask.reshape(num_steps, batch)


def local_sgd(
    model: models_lib.Model,
    optimizer: optax.GradientTransformation,
    local_epochs: int,
    batch_size: int,
    max_examples: int,
    prox_mu: float = 0.0,
) -> Callable[..., ClientOutput]:
  """Builds the local update of FedAvg (prox_mu = 0) or FedProx (prox_mu > 0).

  Args:
    model: the model (its loss is averaged over the real examples of each batch).
    optimizer: the client optimizer (e.g. optax.sgd(client_lr)); its state starts fresh each round.
    local_epochs: passes over the client's data (E).
    batch_size: examples per step (B); -1 for one full batch per epoch (FedSGD when E = 1).
    max_examples: padded rows per client (M).
    prox_mu: FedProx's proximal weight mu: adds mu/2 ||w - w_global||^2 to the local objective.

  Returns:
    client_update(params, client_data, rng, correction=None, lr_scale=1.0) -> ClientOutput.
    `correction`, a pytree like params, is added to every stochastic gradient (SCAFFOLD's
    c - c_i); `lr_scale` (a scalar array) multiplies every local update, which for SGD scales the
    client learning rate (a per-round decay without recompiling).
  """
  validate_local_args(local_epochs, batch_size, max_examples)
  if prox_mu < 0:
    raise ValueError(f'config.algorithm.prox_mu={prox_mu} must be >= 0.')

  def objective(params, global_params, x, y, mask):
    loss = models_lib.batch_loss(model, params, x, y, mask)
    if prox_mu > 0:
      sq = sum(jnp.sum(jnp.square(p - g)) for p, g in
               zip(jax.tree.leaves(params), jax.tree.leaves(global_params)))
      return loss + 0.5 * prox_mu * sq, loss
    return loss, loss

  grad_fn = jax.grad(objective, has_aux=True)

  def client_update(params, data: ClientData, rng, correction=None, lr_scale=1.0) -> ClientOutput:
    global_params = params
    epoch_keys = jax.random.split(rng, local_epochs)
    orders, masks = jax.vmap(lambda k: _epoch_batches(k, data.num_examples, max_examples, batch_size))(epoch_keys)
    orders = orders.reshape((-1, orders.shape[-1]))
    masks = masks.reshape((-1, masks.shape[-1]))

    def step(carry, batch):
      params, opt_state, loss_sum, steps = carry
      order, mask = batch
      x, y = data.x[order], data.y[order]
      grads, loss = grad_fn(params, global_params, x, y, mask)
      if correction is not None:
        grads = jax.tree.map(jnp.add, grads, correction)
      updates, new_opt_state = optimizer.update(grads, opt_state, params)
      updates = jax.tree.map(lambda u: u * lr_scale, updates)
      new_params = optax.apply_updates(params, updates)
      active = jnp.any(mask)
      keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
      return (keep(new_params, params), keep(new_opt_state, opt_state),
              loss_sum + jnp.where(active, loss, 0.0), steps + active.astype(jnp.int32)), None

    init = (params, optimizer.init(params), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    init = match_vma(init, data.num_examples)
    (final, _, loss_sum, steps), _ = jax.lax.scan(step, init, (orders, masks))
    delta = jax.tree.map(jnp.subtract, final, global_params)
    return ClientOutput(delta, loss_sum / jnp.maximum(steps, 1), steps)

  return client_update
