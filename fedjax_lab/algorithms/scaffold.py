"""SCAFFOLD (Karimireddy et al. 2020): control variates that correct client drift.

Each client i keeps a control variate c_i and the server keeps c. A client runs K_i local SGD
steps with the corrected gradient g(y) - c_i + c, then (the paper's option II)

    c_i+ = c_i - c + (x - y_i) / (K_i * client_lr),

and sends (delta_y = y_i - x, delta_c = c_i+ - c_i). The server moves x by the aggregated delta_y
(through its optax optimizer, like FedAvg) and sets c <- c + (1/N) * sum_{i in S} delta_c.
Clients that drop out send nothing and keep their c_i. The per-client variates live in the server
state as one array [N, ...] per parameter leaf (memory N x model size).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab.aggregators.base import weighted_mean
from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import client_keys, tree_bytes
from fedjax_lab.clients import local as local_lib
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.models import models as models_lib

PyTree = Any


class ControlVariates(NamedTuple):
  server: PyTree   # c, leaves like params
  clients: PyTree  # c_i, leaves [N, ...]


def scaffold(
    model: models_lib.Model,
    client_lr: float,
    server_optimizer: optax.GradientTransformation,
    local_epochs: int,
    batch_size: int,
    max_examples: int,
    num_clients: int,
    placement: str = 'auto',
    chunk_size: int | None = None,
    mesh=None,
) -> Algorithm:
  """Builds SCAFFOLD with plain-SGD local steps of size `client_lr` (the variate update assumes SGD).

  Args:
    model, local_epochs, batch_size, max_examples, placement, chunk_size, mesh: as in `fedavg`.
    client_lr: local step size (eta_l).
    server_optimizer: optax optimizer on the negated mean delta (optax.sgd(eta_g) is the paper's).
    num_clients: N, the total number of clients (size of the control-variate table).

  Returns:
    Algorithm over `RoundInputs`.
  """
  if client_lr <= 0:
    raise ValueError(f'config.algorithm.client_lr={client_lr} must be > 0.')
  placement_lib.validate_placement(placement, chunk_size, memory_budget_mb=0)
  client_update = local_lib.local_sgd(model, optax.sgd(client_lr), local_epochs, batch_size, max_examples)

  def init(params) -> ServerState:
    zeros = jax.tree.map(jnp.zeros_like, params)
    table = jax.tree.map(lambda p: jnp.zeros((num_clients,) + p.shape, p.dtype), params)
    return ServerState(params, server_optimizer.init(params), (), (), jnp.zeros((), jnp.int32),
                       ControlVariates(zeros, table))

  def per_client(shared, client):
    params, c_server = shared
    data, key, c_client = client
    correction = jax.tree.map(jnp.subtract, c_server, c_client)
    out = client_update(params, data, key, correction)
    steps = jnp.maximum(out.num_steps, 1).astype(jnp.float32)
    # c_i+ - c_i = -c + (x - y_i) / (K_i * lr) = -c - delta / (K_i * lr)
    delta_c = jax.tree.map(lambda c, d: -c - d / (steps * client_lr), c_server, out.delta)
    return out, delta_c

  def step(state: ServerState, inputs: RoundInputs, rng):
    data = sampling.materialize(inputs).data  # every client's rows at once (map_clients stacks)
    variates: ControlVariates = state.extra
    ids = inputs.client_ids
    c_cohort = jax.tree.map(lambda t: jnp.take(t, ids, axis=0), variates.clients)
    clients = (local_lib.ClientData(data.x, data.y, data.num_examples), client_keys(rng, ids), c_cohort)
    outputs, delta_c = placement_lib.map_clients(per_client, (state.params, variates.server), clients,
                                                 placement, chunk_size, mesh)
    participated = inputs.participation.astype(jnp.float32)
    weights = data.num_examples.astype(jnp.float32) * participated
    update = weighted_mean(outputs.delta, weights)
    server_updates, opt_state = server_optimizer.update(jax.tree.map(jnp.negative, update), state.opt_state,
                                                        state.params)
    params = optax.apply_updates(state.params, server_updates)
    # Only clients that reported change their variates; dropped ones contribute zero.
    delta_c = jax.tree.map(lambda d: d * participated.reshape((-1,) + (1,) * (d.ndim - 1)), delta_c)
    new_server_c = jax.tree.map(lambda c, d: c + jnp.sum(d, axis=0) / num_clients, variates.server, delta_c)
    new_table = jax.tree.map(lambda t, d: t.at[ids].add(d), variates.clients, delta_c)
    participants = jnp.sum(inputs.participation.astype(jnp.int32))
    model_bytes = tree_bytes(state.params)
    total = jnp.sum(weights)
    metrics = {
        'train_loss': jnp.where(total > 0, jnp.sum(weights * outputs.loss) / jnp.where(total > 0, total, 1.0), jnp.nan),
        'participants': participants,
        # SCAFFOLD doubles the traffic: c goes down with x, delta_c comes up with delta_y.
        'bytes_down': jnp.asarray(2 * ids.shape[0] * model_bytes, jnp.float32),
        'bytes_up': 2.0 * participants.astype(jnp.float32) * model_bytes,
        'update_norm': optax.global_norm(update),
    }
    return ServerState(params, opt_state, (), (), state.round + 1,
                       ControlVariates(new_server_c, new_table)), metrics

  return Algorithm(init, step, 'scaffold')
