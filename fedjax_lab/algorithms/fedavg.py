"""FedAvg and its family: FedSGD, FedProx, FedOpt (FedAvgM, FedAdam, FedYogi, FedAdagrad).

One round (McMahan et al. 2017; Reddi et al. 2021 for server optimizers):
  1. the cohort (`RoundInputs`) may be poisoned by a data attack (Byzantine clients only);
  2. every client runs `local_sgd` from the global parameters (placement decides how);
  3. the stacked deltas pass through the update transforms (clipping, noise, compression, attacks);
  4. the aggregator reduces them to one update, weighted by examples x participation;
  5. the server optimizer (optax) treats the negated update as a gradient.
When the aggregator is a plain weighted mean and there are no transforms, step 2-4 stream a running
weighted sum instead (memory flat in the cohort size).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from fedjax_lab.aggregators.base import Aggregator, mean
from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.clients import local as local_lib
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.models import models as models_lib
from fedjax_lab.transforms.base import Transform, make_context

PyTree = Any


def tree_bytes(tree: PyTree) -> int:
  """Bytes of a pytree of arrays (what one model transfer costs)."""
  return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)))


def reported_bytes_sent(transform_state: PyTree):
  """Bytes uploaded last round as reported by a compressor's state (a `bytes_sent` field), or None.

  Searches the (possibly chained) transform state; the last compressor in the chain is what was
  actually sent.
  """
  found = None
  stack = [transform_state]
  while stack:
    node = stack.pop(0)
    if hasattr(node, '_fields') and 'bytes_sent' in node._fields:
      found = node.bytes_sent
    elif isinstance(node, (tuple, list)):
      stack.extend(node)
  return found


def client_keys(rng, client_ids):
  """[C] per-client keys from a round key and global ids: the same draws under any placement."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(client_ids)


def fedavg(
    model: models_lib.Model,
    client_optimizer: optax.GradientTransformation,
    server_optimizer: optax.GradientTransformation,
    local_epochs: int,
    batch_size: int,
    max_examples: int,
    aggregator: Aggregator | None = None,
    transform: Transform | None = None,
    data_attack: Callable[[RoundInputs, jax.Array], RoundInputs] | None = None,
    prox_mu: float = 0.0,
    placement: str = 'auto',
    chunk_size: int | None = None,
    mesh=None,
    client_lr_schedule: Callable[[jax.Array], jax.Array] | None = None,
    name: str = 'fedavg',
) -> Algorithm:
  """Builds FedAvg (or FedProx with prox_mu > 0, FedOpt with any optax server optimizer).

  Args:
    model: the model.
    client_optimizer: optax optimizer of the local steps (e.g. optax.sgd(client_lr)).
    server_optimizer: optax optimizer applied to the negated aggregate (optax.sgd(1.0) is plain
      FedAvg; momentum gives FedAvgM, adam/yogi/adagrad give FedAdam/FedYogi/FedAdagrad).
    local_epochs: E.
    batch_size: B (-1: full batch).
    max_examples: padded client size M of the data.
    aggregator: reduces the stacked deltas (default: example-weighted mean).
    transform: applied to the stacked deltas before aggregation (default: none).
    data_attack: `fn(round_inputs, rng) -> round_inputs`, poisons Byzantine clients' data.
    prox_mu: FedProx's mu.
    placement, chunk_size, mesh: see `fedjax_lab.clients.placement`.
    client_lr_schedule: optional `round -> scale` multiplying every local update (a decaying
      client step size, e.g. lambda r: 1 / (1 + decay * r)); traced, so it never recompiles.
    name: reported name.

  Returns:
    Algorithm whose step takes `RoundInputs` with leaves [C, ...].
  """
  placement_lib.validate_placement(placement, chunk_size)
  aggregator = aggregator or mean()
  client_update = local_lib.local_sgd(model, client_optimizer, local_epochs, batch_size, max_examples, prox_mu)
  streaming = aggregator.streaming and transform is None

  def init(params) -> ServerState:
    return ServerState(
        params=params,
        opt_state=server_optimizer.init(params),
        aggregator_state=aggregator.init(params),
        transform_state=transform.init(params) if transform is not None else (),
        round=jnp.zeros((), jnp.int32),
    )

  def per_client(shared, client):
    params, lr_scale = shared
    data, key = client
    return client_update(params, data, key, lr_scale=lr_scale)

  def step(state: ServerState, inputs: RoundInputs, rng):
    attack_key, train_key, transform_key, aggregate_key = jax.random.split(rng, 4)
    if data_attack is not None:
      inputs = data_attack(inputs, attack_key)
    data = inputs.data
    weights = data.num_examples.astype(jnp.float32) * inputs.participation.astype(jnp.float32)
    clients = (local_lib.ClientData(data.x, data.y, data.num_examples), client_keys(train_key, inputs.client_ids))
    lr_scale = (jnp.ones((), jnp.float32) if client_lr_schedule is None
                else jnp.asarray(client_lr_schedule(state.round), jnp.float32))
    shared = (state.params, lr_scale)
    total_weight = jnp.sum(weights)
    safe_total = jnp.where(total_weight > 0, total_weight, 1.0)

    if streaming:
      sums = placement_lib.weighted_sum_clients(per_client, shared, clients, weights, placement,
                                                chunk_size, mesh)
      update = jax.tree.map(lambda s: s / safe_total, sums.delta)
      train_loss = sums.loss / safe_total
      aggregator_state, transform_state = state.aggregator_state, state.transform_state
    else:
      outputs = placement_lib.map_clients(per_client, shared, clients, placement, chunk_size, mesh)
      deltas = outputs.delta
      ctx = make_context(weights, transform_key, state.params, inputs.client_ids, inputs.byzantine, state.round)
      transform_state = state.transform_state
      if transform is not None:
        deltas, transform_state = transform.update(deltas, transform_state, ctx)
      update, aggregator_state = aggregator.aggregate(deltas, state.aggregator_state, ctx._replace(rng=aggregate_key))
      train_loss = jnp.sum(weights * outputs.loss) / safe_total

    # optax minimises: the aggregate delta points downhill, so its negation is the "gradient".
    server_grads = jax.tree.map(jnp.negative, update)
    server_updates, opt_state = server_optimizer.update(server_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, server_updates)
    participants = jnp.sum(inputs.participation.astype(jnp.int32))
    model_bytes = tree_bytes(state.params)
    bytes_up = participants.astype(jnp.float32) * model_bytes
    compressed = reported_bytes_sent(transform_state)
    if compressed is not None:  # a compressor reports what it actually put on the wire
      bytes_up = jnp.asarray(compressed, jnp.float32)
    metrics = {
        'train_loss': train_loss,
        'client_lr_scale': lr_scale,
        'participants': participants,
        'bytes_down': jnp.asarray(inputs.client_ids.shape[0] * model_bytes, jnp.float32),
        'bytes_up': bytes_up,
        'update_norm': optax.global_norm(update),
    }
    new_state = ServerState(params, opt_state, aggregator_state, transform_state, state.round + 1, state.extra)
    return new_state, metrics

  return Algorithm(init, step, name)


def fedsgd(
    model: models_lib.Model,
    server_optimizer: optax.GradientTransformation,
    max_examples: int,
    **kwargs,
) -> Algorithm:
  """FedSGD = synchronous data-parallel gradient descent: each client sends its full-batch gradient.

  A client takes one full-batch step of plain SGD with learning rate 1, so its delta is minus its
  mean gradient; the example-weighted mean of the deltas is minus the gradient on the union of the
  cohort's data, and the server optimizer takes the step (optax.sgd(lr) is gradient descent).
  """
  return fedavg(model, optax.sgd(1.0), server_optimizer, local_epochs=1, batch_size=-1,
                max_examples=max_examples, name='fedsgd', **kwargs)
