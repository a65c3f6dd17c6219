"""SCAFFOLD (Karimireddy et al. 2020): control variates that correct client drift.

Each client i keeps a control variate c_i and the server keeps c. A client runs K_i local SGD
steps with the corrected gradient g(y) - c_i + c, then (the paper's option II)

    c_i+ = c_i - c + (x - y_i) / (K_i * client_lr),

and sends (delta_y = y_i - x, delta_c = c_i+ - c_i). The server moves x by the aggregated delta_y
through the same server half as FedAvg (`fedavg.ServerPipeline`: update transforms -> aggregator ->
negate -> server optax) and sets c <- c + (1/N) * sum_{i in S} delta_c. Clients that drop out send
nothing and keep their c_i. The per-client variates live in the server state (`ServerState.extra`)
as one array [N, ...] per parameter leaf (memory N x model size).

What each FedAvg-family piece does here (the runner refuses what is not listed):
  aggregator   reduces delta_y (e.g. median, Krum). delta_c is always averaged as above, whatever
               the aggregator: the variates only steer the local steps and the robust rule guards the
               model x. A Byzantine client's delta_c is therefore not filtered.
  transform    update transforms (compression, pre-aggregation, update attacks) act on delta_y only.
               delta_c is computed by the client from its own local model before any transform and
               sent uncompressed (bytes_up counts it at full size); an update attack forges delta_y,
               not delta_c.
  data_attack  poisons the Byzantine clients' rows before local training (both deltas see it).
  client_lr_schedule  scales the local step size per round; the variate update divides by the
               scaled step size, so option II stays exact.
  DP           not supported: noising delta_y while delta_c, a deterministic function of the same
               local model, goes out in the clear gives no privacy guarantee; the runner refuses
               config.dp for SCAFFOLD.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab.aggregators.base import Aggregator, mean
from fedjax_lab.aggregators import base as aggregators_base
from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import (ServerPipeline, client_keys, prepare_inputs, round_context,
                                          server_metrics, weighted_loss)
from fedjax_lab.clients import local as local_lib
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.models import models as models_lib
from fedjax_lab.transforms.base import Transform

PyTree = Any

# Folded into the round key for the attack/transform/aggregator keys: the client training keys are
# fold_in(round key, client id), as before the server half was shared, so the numbers did not move.
_SERVER_KEYS_TAG = 0x5CAF


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
    aggregator: Aggregator | None = None,
    transform: Transform | None = None,
    data_attack: Callable[[RoundInputs, jax.Array], RoundInputs] | None = None,
    placement: str = 'auto',
    chunk_size: int | None = None,
    mesh=None,
    client_lr_schedule: Callable[[jax.Array], jax.Array] | None = None,
) -> Algorithm:
  """Builds SCAFFOLD with plain-SGD local steps of size `client_lr` (the variate update assumes SGD).

  Args:
    model, local_epochs, batch_size, max_examples, placement, chunk_size, mesh: as in `fedavg`.
    client_lr: local step size (eta_l).
    server_optimizer: optax optimizer on the negated aggregate of delta_y (optax.sgd(eta_g) is
      the paper's).
    num_clients: N, the total number of clients (size of the control-variate table).
    aggregator: reduces the stacked delta_y (default: example-weighted mean, the paper's rule);
      delta_c is averaged regardless (module docstring).
    transform: applied to the stacked delta_y before aggregation (default: none).
    data_attack: `fn(round_inputs, rng) -> round_inputs`, poisons Byzantine clients' data.
    client_lr_schedule: optional `round -> scale` of the local step size, as in `fedavg`.

  Returns:
    Algorithm over gathered `RoundInputs` (lazy ones are gathered first: the client map stacks).
  """
  if client_lr <= 0:
    raise ValueError(f'config.algorithm.client_lr={client_lr} must be > 0.')
  if num_clients < 1:
    raise ValueError(f'config.data.num_clients={num_clients} must be >= 1 (rows of the control-variate table).')
  placement_lib.validate_placement(placement, chunk_size, memory_budget_mb=0)
  server = ServerPipeline(server_optimizer, aggregator or mean(), transform)
  client_update = local_lib.local_sgd(model, optax.sgd(client_lr), local_epochs, batch_size, max_examples)

  def init(params) -> ServerState:
    zeros = jax.tree.map(jnp.zeros_like, params)
    table = jax.tree.map(lambda p: jnp.zeros((num_clients,) + p.shape, p.dtype), params)
    return server.init(params, ControlVariates(zeros, table))

  def per_client(shared, client):
    params, c_server, lr_scale = shared
    data, key, c_client = client
    correction = jax.tree.map(jnp.subtract, c_server, c_client)
    if lr_scale is None:
      out = client_update(params, data, key, correction)
      step_size = client_lr
    else:
      out = client_update(params, data, key, correction, lr_scale=lr_scale)
      step_size = client_lr * lr_scale
    steps = jnp.maximum(out.num_steps, 1).astype(jnp.float32)
    # c_i+ - c_i = -c + (x - y_i) / (K_i * lr) = -c - delta / (K_i * lr)
    delta_c = jax.tree.map(lambda c, d: -c - d / (steps * step_size), c_server, out.delta)
    return out, delta_c

  def step(state: ServerState, inputs: RoundInputs, rng):
    # The client keys come from rng itself (as they always have); the server half's from a tag.
    attack_key, transform_key, aggregate_key = jax.random.split(jax.random.fold_in(rng, _SERVER_KEYS_TAG), 3)
    inputs = prepare_inputs(inputs, data_attack, attack_key, gather=True)
    data = inputs.data  # every client's rows at once (map_clients stacks)
    variates: ControlVariates = state.extra
    ids = inputs.client_ids
    lr_scale = (None if client_lr_schedule is None
                else jnp.asarray(client_lr_schedule(state.round), jnp.float32))
    c_cohort = jax.tree.map(lambda t: jnp.take(t, ids, axis=0), variates.clients)
    clients = (local_lib.ClientData(data.x, data.y, data.num_examples), client_keys(rng, ids), c_cohort)
    outputs, delta_c = placement_lib.map_clients(per_client, (state.params, variates.server, lr_scale), clients,
                                                 placement, chunk_size, mesh)
    ctx = round_context(inputs, state, transform_key)
    update, aggregator_state, transform_state = server.reduce_stacked(outputs.delta, state, ctx, aggregate_key)
    # Only clients that reported change their variates; dropped ones contribute zero.
    participated = inputs.participation.astype(jnp.float32)
    delta_c = jax.tree.map(lambda d: d * participated.reshape((-1,) + (1,) * (d.ndim - 1)), delta_c)
    new_server_c = jax.tree.map(lambda c, d: c + jnp.sum(d, axis=0) / num_clients, variates.server, delta_c)
    new_table = jax.tree.map(lambda t, d: t.at[ids].add(d), variates.clients, delta_c)
    new_state = server.apply(state, update, aggregator_state, transform_state,
                             ControlVariates(new_server_c, new_table))
    # SCAFFOLD doubles the traffic: c goes down with x, delta_c comes up with delta_y.
    metrics = server_metrics(update, inputs, state.params, transform_state,
                             weighted_loss(outputs.loss, ctx.weights), models_per_client=2)
    metrics['client_lr_scale'] = jnp.ones((), jnp.float32) if lr_scale is None else lr_scale
    metrics.update(aggregators_base.round_metrics(server.aggregator, ctx.weights))
    return new_state, metrics

  return Algorithm(init, step, 'scaffold')
