"""FedAvg and its family: FedSGD, FedProx, FedOpt (FedAvgM, FedAdam, FedYogi, FedAdagrad).

One round (McMahan et al. 2017; Reddi et al. 2021 for server optimizers):
  1. the cohort (`RoundInputs`) may be poisoned by a data attack (Byzantine clients only);
  2. every client runs `local_sgd` from the global parameters (placement decides how);
  3. the stacked deltas pass through the update transforms (clipping, noise, compression, attacks);
  4. the aggregator reduces them to one update, weighted by examples x participation;
  5. the server optimizer (optax) treats the negated update as a gradient.
Steps 3-5 are the server half, `ServerPipeline`, which SCAFFOLD shares (`algorithms/scaffold.py`);
an algorithm of the family differs only in its client half (what a client computes in step 2).

Streaming (memory flat in the cohort size C). When the aggregator has a `StreamingForm` (a
per-client map, a weighted sum and a finalize step) and the transform, if any, is per-client
(`Transform.per_client`), steps 2-4 are fused into one client function: local training, the
transform, the aggregator's per-client map and the client's weighted contribution, summed by
`placement.sum_clients` as a running total. With placement 'scan' or 'chunked' the compiled round
then holds one client's (or one chunk's) working memory whatever C is, and C = 10,000 fits in one
round. Results equal the stacked path (same keys: every per-client draw folds in the client id).

  streams   aggregators: mean, dp_mean (DP-FedAvg, central DP: clip each client, sum, noise once,
            divide), participant_mean (local DP's server), norm_bounded_mean;
            transforms: clip_by_client_norm, gaussian_noise, local_dp (their chain), quantize,
            topk(error_feedback=False), identity, and any `chain` of these.
  stacked   aggregators: median, trimmed_mean, krum, multi_krum, bulyan, geometric_median,
            centered_clipping (order statistics, pairwise distances, iterations over the cohort);
            transforms: topk with error feedback (the per-client residual table is written from the
            whole cohort), nearest_neighbor_mixing, adaptive_robust_clipping, update attacks.
            These materialise every client's update: about C x model bytes of memory (C = 10,000
            clients of a 200k-parameter float32 MLP is 8 GB), on top of the training itself.

Lazy inputs (nothing of size C x data either). A streaming round also accepts lazy `RoundInputs`
(`sample_round(..., gather=False)`: the population [K, M, ...] and the cohort's ids, no gathered
cohort); each client's rows are then read by id inside the client loop (`rows_by_id` of
`placement.sum_clients`), so the only [C] things in the round are ids, flags and weights. On a mesh
the population may be split over the devices (`placement.shard_rows`, as the runner places it): each
device then holds K / D clients and fetches its clients' rows from their owners in bounded blocks.
The algorithm advertises this with
`Algorithm.lazy_inputs`, which the runner reads. A data attack needs the gathered cohort (it rewrites
the Byzantine clients' rows), so with one the round gathers first (`sampling.materialize`) and
`lazy_inputs` is False; so does the stacked path. Either form of inputs gives the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab.aggregators import base as aggregators_base
from fedjax_lab.aggregators.base import Aggregator, mean
from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.clients import local as local_lib
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import SplitFederatedData
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.models import models as models_lib
from fedjax_lab.transforms.base import ClientContext, RoundContext, Transform, make_context

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


def can_stream(aggregator: Aggregator, transform: Transform | None) -> bool:
  """True when a round can keep a running sum: a streaming aggregator after per-client transforms."""
  return aggregator.streaming_form is not None and (transform is None or transform.per_client is not None)


class ServerPipeline(NamedTuple):
  """The server half of every FedAvg-family round: transforms -> aggregator -> negate -> server optax.

  FedAvg, FedProx, FedSGD, FedOpt and SCAFFOLD differ in their client half (what a client computes
  from the global model and its data); they share this. Given the cohort's deltas (leaves [C, ...]),
  `reduce_stacked` applies the transform (clipping, noise, compression, attacks, pre-aggregation) and
  the aggregator; `apply` treats the negated aggregate as a gradient of the server optimizer. When
  `streams` (a streaming aggregator after a per-client transform), the round may instead fuse
  `client_contribution` into each client and call `reduce_streamed` on the running sums, with memory
  flat in the cohort size (see the module docstring); the two give the same update.

  Attributes:
    server_optimizer: optax optimizer on the negated aggregate.
    aggregator: reduces the stacked (transformed) deltas to one update.
    transform: applied to the stacked deltas first, or None.
  """

  server_optimizer: optax.GradientTransformation
  aggregator: Aggregator
  transform: Transform | None = None

  @property
  def streams(self) -> bool:
    return can_stream(self.aggregator, self.transform)

  def init(self, params, extra: PyTree = ()) -> ServerState:
    """The server state at round 0; `extra` is the algorithm's own state (SCAFFOLD's variates)."""
    return ServerState(
        params=params,
        opt_state=self.server_optimizer.init(params),
        aggregator_state=self.aggregator.init(params),
        transform_state=self.transform.init(params) if self.transform is not None else (),
        round=jnp.zeros((), jnp.int32),
        extra=extra,
    )

  def reduce_stacked(self, deltas: PyTree, state: ServerState, ctx: RoundContext, aggregate_key):
    """Transforms then aggregates the stacked deltas (leaves [C, ...]).

    Args:
      deltas: pytree, leaves [C, ...], one row per cohort slot.
      state: the server state before the round.
      ctx: the round's RoundContext; ctx.rng is the transform's key.
      aggregate_key: the aggregator's key.

    Returns:
      (update with leaves [...], aggregator_state, transform_state).
    """
    transform_state = state.transform_state
    if self.transform is not None:
      deltas, transform_state = self.transform.update(deltas, transform_state, ctx)
    update, aggregator_state = self.aggregator.aggregate(deltas, state.aggregator_state,
                                                         ctx._replace(rng=aggregate_key))
    return update, aggregator_state, transform_state

  def client_contribution(self, delta: PyTree, client_ctx: ClientContext) -> dict:
    """One client's share of the running sum (streaming only): transform, map, weigh.

    Args:
      delta: one client's delta, leaves [...].
      client_ctx: the client's ClientContext (rng: the transform's round key).

    Returns:
      {'update': float32 leaves [...], 'sum_weight': [] float32}; a client with sum weight 0 adds 0.
    """
    form = self.aggregator.streaming_form
    if self.transform is not None:
      delta = self.transform.per_client.apply(delta, client_ctx)
    sum_weight = form.sum_weight(client_ctx.weight)
    # where, not only the product: a dropped client's update must not leak a nan into the sum.
    contribution = jax.tree.map(lambda m: jnp.where(sum_weight > 0, sum_weight * m.astype(jnp.float32), 0.0),
                                form.client_map(delta, client_ctx.weight))
    return {'update': contribution, 'sum_weight': sum_weight}

  def reduce_streamed(self, sums: PyTree, sum_weight, state: ServerState, ctx: RoundContext, aggregate_key):
    """The aggregate from the running sums of `client_contribution`: what `reduce_stacked` gives.

    Returns:
      (update with leaves [...], aggregator_state, transform_state).
    """
    update, aggregator_state = self.aggregator.streaming_form.finalize(sums, sum_weight, state.aggregator_state,
                                                                        ctx._replace(rng=aggregate_key))
    transform_state = state.transform_state
    if self.transform is not None:
      shapes = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), state.params)
      transform_state = self.transform.per_client.next_state(state.transform_state, ctx, shapes)
    return update, aggregator_state, transform_state

  def apply(self, state: ServerState, update: PyTree, aggregator_state, transform_state,
            extra: PyTree = ()) -> ServerState:
    """The server step: the negated aggregate is the optimizer's gradient. Returns the next state."""
    # optax minimises: the aggregate delta points downhill, so its negation is the "gradient".
    server_grads = jax.tree.map(jnp.negative, update)
    server_updates, opt_state = self.server_optimizer.update(server_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, server_updates)
    return ServerState(params, opt_state, aggregator_state, transform_state, state.round + 1, extra)


def round_context(inputs: RoundInputs, state: ServerState, transform_key) -> RoundContext:
  """The round's RoundContext: weights [C] = examples x participation, ids, Byzantine flags, round."""
  num_examples = sampling.cohort_num_examples(inputs)
  weights = num_examples.astype(jnp.float32) * inputs.participation.astype(jnp.float32)
  return make_context(weights, transform_key, state.params, inputs.client_ids, inputs.byzantine, state.round)


def server_metrics(update: PyTree, inputs: RoundInputs, params: PyTree, transform_state: PyTree,
                   train_loss, models_per_client: int = 1) -> dict:
  """The metrics every FedAvg-family round reports.

  Args:
    update: the aggregate, leaves [...].
    inputs: the round's RoundInputs (participation [C], client_ids [C]).
    params: the global parameters before the round (their size is one model transfer).
    transform_state: the transform state after the round (a compressor reports what it sent).
    train_loss: [] float32.
    models_per_client: model-sized messages each way per client (SCAFFOLD: 2, x with c and
      delta_y with delta_c); a compressor compresses only the first upload.

  Returns:
    dict of [] arrays: train_loss, participants, bytes_down, bytes_up, update_norm.
  """
  participants = jnp.sum(inputs.participation.astype(jnp.int32))
  model_bytes = tree_bytes(params)
  bytes_up = participants.astype(jnp.float32) * model_bytes
  compressed = reported_bytes_sent(transform_state)
  if compressed is not None:  # a compressor reports what it actually put on the wire
    bytes_up = jnp.asarray(compressed, jnp.float32)
  if models_per_client > 1:
    bytes_up = bytes_up + (models_per_client - 1) * participants.astype(jnp.float32) * model_bytes
  return {
      'train_loss': train_loss,
      'participants': participants,
      'bytes_down': jnp.asarray(models_per_client * inputs.client_ids.shape[0] * model_bytes, jnp.float32),
      'bytes_up': bytes_up,
      'update_norm': optax.global_norm(update),
  }


def prepare_inputs(inputs: RoundInputs, data_attack, attack_key, gather: bool) -> RoundInputs:
  """The cohort a round trains on: gathered when `gather` or a data attack needs it, then poisoned.

  A data attack rewrites the Byzantine clients' rows (x, y), so it needs the gathered cohort.
  """
  if data_attack is not None or gather:
    inputs = sampling.materialize(inputs)  # a no-op for gathered inputs
  if data_attack is not None:
    inputs = data_attack(inputs, attack_key)
  return inputs


def weighted_loss(losses: jax.Array, weights: jax.Array) -> jax.Array:
  """sum_i w_i loss_i / sum_i w_i over the cohort ([C] -> []); NaN when no client reported (no data is
  not a loss of 0). Excluded clients are masked with where, so their loss never leaks in."""
  total = jnp.sum(weights)
  summed = jnp.sum(jnp.where(weights > 0, weights * losses, 0.0))
  return jnp.where(total > 0, summed / jnp.where(total > 0, total, 1.0), jnp.nan)


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

  The client half is `local_sgd` (with FedProx's term when prox_mu > 0); the server half is a
  `ServerPipeline(server_optimizer, aggregator, transform)`.

  Args:
    model: the model.
    client_optimizer: optax optimizer of the local steps (e.g. optax.sgd(client_lr)).
    server_optimizer: optax optimizer applied to the negated aggregate (optax.sgd(1.0) is plain
      FedAvg; momentum gives FedAvgM, adam/yogi/adagrad give FedAdam/FedYogi/FedAdagrad).
    local_epochs: E.
    batch_size: B (-1: full batch).
    max_examples: padded client size M of the data.
    aggregator: reduces the stacked deltas (default: example-weighted mean).
    transform: applied to the stacked deltas before aggregation (default: none). The round
      streams (memory flat in C) when `can_stream(aggregator, transform)`; see the module docstring.
    data_attack: `fn(round_inputs, rng) -> round_inputs`, poisons Byzantine clients' data (given
      gathered inputs).
    prox_mu: FedProx's mu.
    placement, chunk_size, mesh: see `fedjax_lab.clients.placement`.
    client_lr_schedule: optional `round -> scale` multiplying every local update (a decaying
      client step size, e.g. lambda r: 1 / (1 + decay * r)); traced, so it never recompiles.
    name: reported name.

  Returns:
    Algorithm whose step takes `RoundInputs`, gathered (leaves [C, ...]) or lazy; `lazy_inputs` is
    True when the round streams without a data attack (then lazy inputs keep memory flat in C).
  """
  placement_lib.validate_placement(placement, chunk_size, memory_budget_mb=0)
  server = ServerPipeline(server_optimizer, aggregator or mean(), transform)
  client_update = local_lib.local_sgd(model, client_optimizer, local_epochs, batch_size, max_examples, prox_mu)
  streaming = server.streams

  def per_client(shared, client):
    params, lr_scale = shared
    data, key = client
    return client_update(params, data, key, lr_scale=lr_scale)

  def streamed_client(shared, client):
    """One client's fused contribution: train, transform, map, weigh (all float32, leaves [...])."""
    params, lr_scale, train_key, transform_key, round_index = shared
    data, (client_id, participation, byzantine) = client  # data: gathered, or read by id (lazy inputs)
    data = local_lib.ClientData(data.x, data.y, data.num_examples)
    weight = data.num_examples.astype(jnp.float32) * participation.astype(jnp.float32)
    out = client_update(params, data, jax.random.fold_in(train_key, client_id), lr_scale=lr_scale)
    client_ctx = ClientContext(weight, transform_key, params, client_id, byzantine, round_index)
    return {**server.client_contribution(out.delta, client_ctx), 'weight': weight,
            'loss': jnp.where(weight > 0, weight * out.loss, 0.0)}

  def step(state: ServerState, inputs: RoundInputs, rng):
    attack_key, train_key, transform_key, aggregate_key = jax.random.split(rng, 4)
    inputs = prepare_inputs(inputs, data_attack, attack_key, gather=not streaming)
    data = inputs.data
    lr_scale = (jnp.ones((), jnp.float32) if client_lr_schedule is None
                else jnp.asarray(client_lr_schedule(state.round), jnp.float32))
    ctx = round_context(inputs, state, transform_key)

    if streaming:
      # Client ids, not [C] keys or weights: nothing of size C x model is built inside the round.
      # Lazy inputs: no per-client data at all; each client's rows are read from the population by
      # id inside the client loop (on a mesh, from the device that holds them: `shard_rows`).
      cohort = (inputs.client_ids, inputs.participation, inputs.byzantine)
      shared = (state.params, lr_scale, train_key, transform_key, state.round)
      if inputs.is_lazy:
        split = isinstance(inputs.population, SplitFederatedData)
        sums = placement_lib.sum_clients(streamed_client, shared, cohort, placement, chunk_size, mesh,
                                         rows_by_id=(inputs.population, inputs.client_ids), rows_split=split)
      else:
        sums = placement_lib.sum_clients(streamed_client, shared, (data, cohort), placement, chunk_size, mesh)
      update, aggregator_state, transform_state = server.reduce_streamed(sums['update'], sums['sum_weight'], state,
                                                                         ctx, aggregate_key)
      train_loss = jnp.where(sums['weight'] > 0, sums['loss'] / jnp.maximum(sums['weight'], 1e-30), jnp.nan)
    else:
      clients = (local_lib.ClientData(data.x, data.y, data.num_examples), client_keys(train_key, inputs.client_ids))
      outputs = placement_lib.map_clients(per_client, (state.params, lr_scale), clients, placement, chunk_size,
                                          mesh)
      update, aggregator_state, transform_state = server.reduce_stacked(outputs.delta, state, ctx, aggregate_key)
      train_loss = weighted_loss(outputs.loss, ctx.weights)

    new_state = server.apply(state, update, aggregator_state, transform_state, state.extra)
    metrics = server_metrics(update, inputs, state.params, transform_state, train_loss)
    metrics['client_lr_scale'] = lr_scale
    # Robust rules: 'breakdown_violated' when too few clients reported for the rule's guarantee.
    metrics.update(aggregators_base.round_metrics(server.aggregator, ctx.weights))
    return new_state, metrics

  return Algorithm(server.init, step, name, lazy_inputs=streaming and data_attack is None)


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
