"""SCAFFOLD on the shared server half: the paper's numbers unchanged, and each piece applied to delta_y."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import aggregators
from fedjax_lab.algorithms.scaffold import ControlVariates, scaffold
from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import client_keys, tree_bytes
from fedjax_lab.attacks import label_flip, sign_flip
from fedjax_lab.clients import local as local_lib
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import pack_clients, sample_round, sampling, to_device
from fedjax_lab.models import models

NUM_CLIENTS = 12


def _reference_scaffold(model, client_lr, server_optimizer, local_epochs, batch_size, max_examples, num_clients,
                        placement='auto', chunk_size=None, mesh=None):
  """SCAFFOLD as it was before it shared FedAvg's server half (commit 27017e2), kept as the reference."""
  client_update = local_lib.local_sgd(model, optax.sgd(client_lr), local_epochs, batch_size, max_examples)

  def init(params):
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
    delta_c = jax.tree.map(lambda c, d: -c - d / (steps * client_lr), c_server, out.delta)
    return out, delta_c

  def step(state, inputs, rng):
    data = sampling.materialize(inputs).data
    variates = state.extra
    ids = inputs.client_ids
    c_cohort = jax.tree.map(lambda t: jnp.take(t, ids, axis=0), variates.clients)
    clients = (local_lib.ClientData(data.x, data.y, data.num_examples), client_keys(rng, ids), c_cohort)
    outputs, delta_c = placement_lib.map_clients(per_client, (state.params, variates.server), clients,
                                                 placement, chunk_size, mesh)
    participated = inputs.participation.astype(jnp.float32)
    weights = data.num_examples.astype(jnp.float32) * participated
    update = aggregators.weighted_mean(outputs.delta, weights)
    server_updates, opt_state = server_optimizer.update(jax.tree.map(jnp.negative, update), state.opt_state,
                                                        state.params)
    params = optax.apply_updates(state.params, server_updates)
    delta_c = jax.tree.map(lambda d: d * participated.reshape((-1,) + (1,) * (d.ndim - 1)), delta_c)
    new_server_c = jax.tree.map(lambda c, d: c + jnp.sum(d, axis=0) / num_clients, variates.server, delta_c)
    new_table = jax.tree.map(lambda t, d: t.at[ids].add(d), variates.clients, delta_c)
    participants = jnp.sum(inputs.participation.astype(jnp.int32))
    model_bytes = tree_bytes(state.params)
    total = jnp.sum(weights)
    metrics = {
        'train_loss': jnp.sum(weights * outputs.loss) / jnp.where(total > 0, total, 1.0),
        'participants': participants,
        'bytes_down': jnp.asarray(2 * ids.shape[0] * model_bytes, jnp.float32),
        'bytes_up': 2.0 * participants.astype(jnp.float32) * model_bytes,
        'update_norm': optax.global_norm(update),
    }
    return ServerState(params, opt_state, (), (), state.round + 1,
                       ControlVariates(new_server_c, new_table)), metrics

  return Algorithm(init, step, 'scaffold')


def _data():
  rng = np.random.default_rng(0)
  sizes = rng.integers(3, 12, size=NUM_CLIENTS)
  x = rng.normal(size=(sizes.sum(), 6)).astype(np.float32)
  y = rng.integers(0, 3, size=sizes.sum()).astype(np.int32)
  return to_device(pack_clients(x, y, np.split(np.arange(sizes.sum()), np.cumsum(sizes)[:-1])))


_MODEL = models.mlp((6,), 3, hidden=(8,))
_BYZANTINE = jnp.arange(NUM_CLIENTS) % 3 == 0


def _inputs(data, r, cohort=10, dropout=0.3):
  return sample_round(data, jax.random.fold_in(jax.random.key(r), 1), cohort, dropout, _BYZANTINE)


def _train(algorithm, data, rounds, **kwargs):
  state = algorithm.init(_MODEL.init(jax.random.key(0)))
  step = jax.jit(algorithm.step)
  for r in range(rounds):
    state, metrics = step(state, _inputs(data, r, **kwargs), jax.random.key(r))
  return state, metrics


def _build(data, **kwargs):
  kwargs.setdefault('server_optimizer', optax.sgd(1.0))
  return scaffold(_MODEL, 0.1, kwargs.pop('server_optimizer'), 2, 4, data.max_examples, NUM_CLIENTS, **kwargs)


@pytest.mark.parametrize('placement', ['vmap', 'scan'])
def test_mean_and_no_transform_give_the_numbers_of_before_bit_for_bit(placement):
  data = _data()
  new, new_metrics = _train(_build(data, server_optimizer=optax.adam(0.01), placement=placement), data, 3)
  old, old_metrics = _train(_reference_scaffold(_MODEL, 0.1, optax.adam(0.01), 2, 4, data.max_examples, NUM_CLIENTS,
                                                placement=placement), data, 3)
  jax.tree.map(np.testing.assert_array_equal, new, old)  # params, optimizer state, both control variates
  for key, value in old_metrics.items():
    np.testing.assert_array_equal(new_metrics[key], value, err_msg=key)


def _first_round_deltas(data, inputs, rng):
  """delta_y of every cohort client in round 0, where all control variates are 0 (plain local SGD)."""
  update = local_lib.local_sgd(_MODEL, optax.sgd(0.1), 2, 4, data.max_examples)
  params = _MODEL.init(jax.random.key(0))
  keys = client_keys(rng, inputs.client_ids)
  deltas = jax.vmap(lambda d, k: update(params, local_lib.ClientData(*d), k).delta)(inputs.data, keys)
  return params, deltas


def test_median_aggregates_delta_y_and_the_variates_are_still_averaged():
  data = _data()
  inputs = _inputs(data, 0)
  one_round = lambda algorithm: jax.jit(algorithm.step)(algorithm.init(_MODEL.init(jax.random.key(0))), inputs,
                                                         jax.random.key(0))[0]
  median_state = one_round(_build(data, aggregator=aggregators.median()))
  mean_state = one_round(_build(data))
  params, deltas = _first_round_deltas(data, inputs, jax.random.key(0))
  present = np.asarray(inputs.participation)
  assert 2 <= present.sum() < len(present)
  expected = jax.tree.map(lambda p, d: p + np.median(np.asarray(d)[present], axis=0), params, deltas)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), median_state.params, expected)
  assert not np.allclose(jax.tree.leaves(median_state.params)[0], jax.tree.leaves(mean_state.params)[0])
  # delta_c is averaged whatever reduces delta_y.
  jax.tree.map(np.testing.assert_array_equal, median_state.extra, mean_state.extra)


def test_update_attack_forges_delta_y_only_and_a_data_attack_poisons_training():
  data = _data()
  honest, _ = _train(_build(data), data, 1)
  flipped, _ = _train(_build(data, transform=sign_flip(1.0)), data, 1)
  poisoned, _ = _train(_build(data, data_attack=label_flip(3)), data, 1)
  differ = lambda a, b: not np.array_equal(jax.tree.leaves(a)[0], jax.tree.leaves(b)[0])
  assert differ(flipped.params, honest.params)
  jax.tree.map(np.testing.assert_array_equal, flipped.extra, honest.extra)  # delta_c computed honestly
  assert differ(poisoned.params, honest.params) and differ(poisoned.extra.server, honest.extra.server)


def test_client_lr_schedule_scales_the_step_and_the_variate_update():
  data = _data()
  scheduled = scaffold(_MODEL, 0.1, optax.sgd(1.0), 2, 4, data.max_examples, NUM_CLIENTS,
                       client_lr_schedule=lambda r: 0.5)
  halved = scaffold(_MODEL, 0.05, optax.sgd(1.0), 2, 4, data.max_examples, NUM_CLIENTS)
  a, metrics = _train(scheduled, data, 3)
  b, _ = _train(halved, data, 3)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6), (a.params, a.extra),
               (b.params, b.extra))
  assert float(metrics['client_lr_scale']) == 0.5


def test_compressed_delta_y_counts_its_bytes_and_delta_c_at_full_size():
  from fedjax_lab.transforms import compression
  data = _data()
  num_params = models.num_params(_MODEL.init(jax.random.key(0)))
  _, metrics = _train(_build(data, transform=compression.quantize(bits=8)), data, 1, dropout=0.0)
  model_bytes = 4 * num_params
  assert float(metrics['bytes_up']) == 10 * (compression.quantize_bytes_per_client(num_params, 8) + model_bytes)
  assert float(metrics['bytes_down']) == 2 * 10 * model_bytes
