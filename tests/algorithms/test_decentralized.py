"""Decentralized algorithms against closed forms and plain references.

Float64: the exact-optimum tests run inside `with jax.enable_x64(True):` (a context manager, so the
flag is restored when the test ends; `test_x64_does_not_leak` checks it). Parameters and data are
cast to float64 explicitly inside the context.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import engine
from fedjax_lab import topology as topo_lib
from fedjax_lab.algorithms import decentralized as dec
from fedjax_lab.clients.placement import client_mesh
from fedjax_lab.data.federated import FederatedData, pack_clients
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.models import models as models_lib

N, M, D = 8, 12, 3


def least_squares(num_nodes=N, examples=M, dim=D, heterogeneity=1.0, seed=0, dtype=np.float32):
  """Node i's targets come from its own w_i = w + heterogeneity * noise: different local optima.

  Returns (FederatedData on device, global least-squares optimum [dim]).
  """
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(num_nodes * examples, dim))
  local_w = rng.normal(size=dim) + heterogeneity * rng.normal(size=(num_nodes, dim))
  b = np.einsum('nmd,nd->nm', a.reshape(num_nodes, examples, dim), local_w).ravel()
  b = b + 0.1 * rng.normal(size=b.shape)
  data = pack_clients(a.astype(dtype), b.astype(dtype),
                      [np.arange(i * examples, (i + 1) * examples) for i in range(num_nodes)])
  optimum = np.linalg.lstsq(a, b, rcond=None)[0]  # equal node sizes: the global objective's minimiser
  return FederatedData(*(jnp.asarray(v) for v in data)), optimum


def zeros_like_model(model, dtype=jnp.float32):
  return jax.tree.map(lambda p: jnp.zeros(p.shape, dtype), model.init(jax.random.key(0)))


def run_steps(algorithm, state, data, key, num_steps):
  """`num_steps` steps through the engine's one loop, every node every step."""
  return engine.scan_rounds(algorithm, engine.every_client_sampler(data), state, key, num_steps)


def kernel(params):
  return np.asarray(params['Dense_0']['kernel'])[..., 0]


# ---------------------------------------------------------------------------------------------
# Bias on heterogeneous data: D-PSGD keeps one, gradient tracking and exact diffusion do not.


def test_gradient_tracking_reaches_optimum_and_dpsgd_is_biased():
  with jax.enable_x64(True):
    data, optimum = least_squares(dtype=np.float64)
    model = models_lib.linear_regression((D,))
    params = zeros_like_model(model, jnp.float64)
    topology = topo_lib.make_topology('ring', N)
    errors = {}
    for name, algorithm in [('dpsgd', dec.dpsgd(model, topology, 0.1)),
                            ('gradient_tracking', dec.gradient_tracking(model, topology, 0.1)),
                            ('exact_diffusion', dec.exact_diffusion(model, topology, 0.1))]:
      state, metrics = run_steps(algorithm, algorithm.init(params), data, jax.random.key(0), 800)
      assert state.params['Dense_0']['kernel'].dtype == jnp.float64
      errors[name] = np.abs(kernel(state.params) - optimum[None]).max()  # every node, not just the mean
      errors[name + '_consensus'] = float(metrics['consensus_error'][-1])
  assert errors['gradient_tracking'] < 1e-8, errors
  assert errors['exact_diffusion'] < 1e-8, errors
  # A constant step leaves D-PSGD at a fixed point away from the optimum, nodes still disagreeing.
  assert errors['dpsgd'] > 1e-2, errors
  assert errors['dpsgd_consensus'] > 1e-3, errors


def test_x64_does_not_leak():
  assert jnp.zeros(1).dtype == jnp.float32


def test_dpsgd_bias_shrinks_with_step_size():
  data, optimum = least_squares()
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('ring', N)
  errors = []
  for lr in (0.2, 0.05):
    algorithm = dec.dpsgd(model, topology, lr)
    state, _ = run_steps(algorithm, algorithm.init(zeros_like_model(model)), data, jax.random.key(0), 1500)
    errors.append(np.linalg.norm(kernel(state.params).mean(0) - optimum))
  assert errors[1] < 0.5 * errors[0], errors


# ---------------------------------------------------------------------------------------------
# Complete graph: equal to centralized mini-batch SGD with the same samples.


def _centralized_sgd(model, params, data, rng, lr, steps, batch_size):
  """Mini-batch SGD on one model over the union of the nodes' batches (same indices as the nodes)."""
  sgd = optax.sgd(lr)
  opt_state = sgd.init(params)
  trajectory = []

  @jax.jit
  def union_grads(params, key):
    x, y, mask = dec.node_batches(data, key, batch_size)
    union = lambda a: a.reshape((-1,) + a.shape[2:])
    return jax.grad(lambda p: models_lib.batch_loss(model, p, union(x), union(y), union(mask)))(params)

  for k in range(steps):
    grads = union_grads(params, jax.random.fold_in(rng, k))
    updates, opt_state = sgd.update(grads, opt_state)
    params = optax.apply_updates(params, updates)
    trajectory.append(params)
  return trajectory


@pytest.mark.parametrize('order', ['atc', 'cta', 'consensus'])
def test_complete_graph_equals_centralized_minibatch_sgd(order):
  data, _ = least_squares(heterogeneity=2.0, seed=1)
  model = models_lib.mlp((D,), 1, hidden=(4,))  # a non-linear model, so gradients depend on the point
  model = model._replace(loss=lambda out, y: 0.5 * jnp.square(out[..., 0] - y))
  params = model.init(jax.random.key(3))
  topology = topo_lib.make_topology('complete', N, weights='uniform')
  lr, steps, batch_size, rng = 0.05, 6, 3, jax.random.key(4)
  algorithm = dec.dpsgd(model, topology, lr, batch_size=batch_size, order=order)
  state = algorithm.init(params)
  reference = _centralized_sgd(model, params, data, rng, lr, steps, batch_size)
  step = jax.jit(algorithm.step)

  @jax.jit
  def average_after_consensus_step(params, key):
    _, grads = dec.node_gradients(model, params, dec.node_batches(data, key, batch_size))
    return jax.tree.map(lambda p, g: p.mean(0) - lr * g.mean(0), params, grads)

  for k in range(steps):
    previous = state
    state, _ = step(state, engine.every_client_inputs(data), jax.random.fold_in(rng, k))
    average = state.average_params
    if order == 'atc':
      # x <- W(x - a g(x)) with W = 11^T/N: every node holds the SGD iterate.
      for leaf, ref in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference[k])):
        np.testing.assert_allclose(leaf, np.broadcast_to(ref, leaf.shape), rtol=1e-5, atol=1e-6)
    elif order == 'cta':
      # x <- Wx - a g(Wx): the gradients are taken at the average, so the average is the SGD iterate.
      chex_close(average, reference[k])
    else:
      # x <- Wx - a g(x): gradients at each node's own point, so the average moves by the mean of
      # gradients taken at N different points; it equals SGD only on the first step.
      expected = average_after_consensus_step(previous.params, jax.random.fold_in(rng, k))
      chex_close(average, expected)
      if k == 0:
        chex_close(average, reference[0])
  if order == 'consensus':
    # ... and after a few steps it has drifted from SGD by a measurable amount.
    gap = max(np.abs(np.asarray(a) - np.asarray(b)).max()
              for a, b in zip(jax.tree.leaves(state.average_params), jax.tree.leaves(reference[-1])))
    assert gap > 1e-6


def chex_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Consensus error vs the spectral bound; the disconnected graph.


def _random_stacked(num_nodes, seed=0):
  rng = np.random.default_rng(seed)
  return {'Dense_0': {'kernel': jnp.asarray(rng.normal(size=(num_nodes, D, 1)), jnp.float32)}}


@pytest.mark.parametrize('name,n', [('ring', 16), ('torus', 16), ('exponential', 16), ('star', 10),
                                    ('random_matchings', 16), ('one_peer_exponential', 12)])
def test_consensus_error_falls_at_least_as_fast_as_spectral_bound(name, n):
  # With a step of 0 every algorithm is pure gossip, for which ||X_k - mean|| <= rho^k ||X_0 - mean||
  # (per period for a schedule). Tolerance: a relative 1e-4 plus 1e-10 absolute (float32 rounding).
  topology = topo_lib.make_topology(name, n)
  data, _ = least_squares(num_nodes=n)
  model = models_lib.linear_regression((D,))
  algorithm = dec.dpsgd(model, topology, 0.0)
  x0 = _random_stacked(n)
  state = algorithm.init(x0, stacked=True)
  steps = 40 * topology.period
  _, metrics = run_steps(algorithm, state, data, jax.random.key(0), steps)
  errors = np.concatenate([[float(topo_lib.consensus_error(x0))], np.asarray(metrics['consensus_error'])])
  period = topology.period
  rho_period = topo_lib.rho(topo_lib.period_product(topology.mixing))
  k = np.arange(0, steps + 1, period)
  bound = rho_period ** (2 * (k // period)) * errors[0]
  assert np.all(errors[k] <= bound * (1 + 1e-4) + 1e-10), (errors[k], bound)
  assert errors[-1] < 1e-2 * errors[0]


def test_consensus_rate_is_tight_on_the_ring():
  # The slowest eigenvector is excited by a random start, so the measured per-step rate of
  # ||X - mean|| approaches rho (within 2 %) once faster modes have died out.
  n = 16
  topology = topo_lib.make_topology('ring', n, weights='uniform')
  data, _ = least_squares(num_nodes=n)
  algorithm = dec.dpsgd(models_lib.linear_regression((D,)), topology, 0.0)
  _, metrics = run_steps(algorithm, algorithm.init(_random_stacked(n), stacked=True), data,
                             jax.random.key(0), 60)
  errors = np.asarray(metrics['consensus_error'], np.float64)
  measured = np.sqrt(errors[-1] / errors[-21]) ** (1 / 20)
  np.testing.assert_allclose(measured, topology.rho, rtol=0.02)


def test_disconnected_graph_stops_converging_with_two_models():
  n = 8
  topology = topo_lib.make_topology('disconnected', n)
  data, _ = least_squares(num_nodes=n, heterogeneity=1.0, seed=2)
  model = models_lib.linear_regression((D,))
  with pytest.warns(RuntimeWarning, match='disconnected'):
    algorithm = dec.gradient_tracking(model, topology, 0.1, allow_disconnected=True)
  state, metrics = run_steps(algorithm, algorithm.init(zeros_like_model(model)), data, jax.random.key(0), 600)
  errors = np.asarray(metrics['consensus_error'])
  # Stopped falling: the last 200 steps change it by < 0.1 %, and it is far from 0.
  assert errors[-1] > 1e-2
  np.testing.assert_allclose(errors[-1], errors[-200], rtol=1e-3)
  # Each component agrees internally and sits at its own data's least-squares optimum.
  w = kernel(state.params)
  a = np.asarray(data.x).reshape(n, M, D)
  b = np.asarray(data.y)
  for nodes in (np.arange(n // 2), np.arange(n // 2, n)):
    own = np.linalg.lstsq(a[nodes].reshape(-1, D), b[nodes].ravel(), rcond=None)[0]
    np.testing.assert_allclose(w[nodes], np.broadcast_to(own, w[nodes].shape), atol=1e-4)
  assert np.linalg.norm(w[: n // 2].mean(0) - w[n // 2:].mean(0)) > 0.1


def test_disconnected_graph_is_refused_by_default():
  topology = topo_lib.make_topology('disconnected', 8)
  model = models_lib.linear_regression((D,))
  for builder in (dec.dpsgd, dec.gradient_tracking, dec.exact_diffusion):
    with pytest.raises(ValueError, match='allow_disconnected=True'):
      builder(model, topology, 0.1)


def test_connected_graph_does_not_warn():
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    dec.dpsgd(models_lib.linear_regression((D,)), topo_lib.make_topology('ring', 8), 0.1)


# ---------------------------------------------------------------------------------------------
# Orders, local steps, placement, determinism, runner inputs.


def test_local_steps_one_equals_adapt_then_combine():
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('ring', N)
  a = dec.local_sgd_gossip(model, topology, 0.1, batch_size=4, local_steps=1)
  b = dec.dpsgd(model, topology, 0.1, batch_size=4, order='atc')
  params = zeros_like_model(model)
  sa, _ = run_steps(a, a.init(params), data, jax.random.key(0), 5)
  sb, _ = run_steps(b, b.init(params), data, jax.random.key(0), 5)
  chex_close(sa.params, sb.params)


def test_local_steps_reference():
  # Two local full-batch GD steps on every node, then one gossip, against a numpy loop.
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('ring', N)
  algorithm = dec.local_sgd_gossip(model, topology, 0.1, batch_size=-1, local_steps=2)
  state, _ = run_steps(algorithm, algorithm.init(zeros_like_model(model)), data, jax.random.key(0), 3)
  a = np.asarray(data.x, np.float64)
  b = np.asarray(data.y, np.float64)
  w = np.zeros((N, D))
  for _ in range(3):
    for _ in range(2):
      residual = np.einsum('nmd,nd->nm', a, w) - b
      w = w - 0.1 * np.einsum('nmd,nm->nd', a, residual) / M
    w = topology.W @ w
  np.testing.assert_allclose(kernel(state.params), w, rtol=1e-4, atol=1e-5)


def test_gradient_tracking_reference_with_time_varying_schedule():
  # DIGing on one-peer exponential against a numpy loop: y_k = W_{k-1} y_{k-1} + g_k - g_{k-1}.
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('one_peer_exponential', N)
  algorithm = dec.gradient_tracking(model, topology, 0.1)
  state, _ = run_steps(algorithm, algorithm.init(zeros_like_model(model)), data, jax.random.key(0), 7)
  a, b = np.asarray(data.x, np.float64), np.asarray(data.y, np.float64)
  grad = lambda w: np.einsum('nmd,nm->nd', a, np.einsum('nmd,nd->nm', a, w) - b) / M
  w = np.zeros((N, D))
  y = grad(w)
  for k in range(7):
    w_next = topology.mixing[k % topology.period] @ w - 0.1 * y
    y = topology.mixing[k % topology.period] @ y + grad(w_next) - grad(w)
    w = w_next
  np.testing.assert_allclose(kernel(state.params), w, rtol=1e-4, atol=1e-5)


def test_ppermute_gossip_matches_dense_in_training():
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices')
  n = 16
  data, _ = least_squares(num_nodes=n)
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('ring', n)
  mesh = client_mesh(8)
  results = []
  for impl in ('dense', 'ppermute'):
    algorithm = dec.gradient_tracking(model, topology, 0.1, batch_size=4, gossip_impl=impl, mesh=mesh)
    state, metrics = run_steps(algorithm, algorithm.init(zeros_like_model(model)), data, jax.random.key(1), 10)
    results.append((kernel(state.params), np.asarray(metrics['consensus_error'])))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-9)


def test_same_seed_same_numbers_and_scan_equals_loop():
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  algorithm = dec.dpsgd(model, topo_lib.make_topology('ring', N), 0.1, batch_size=3)
  state0 = algorithm.init(zeros_like_model(model))
  s1, m1 = run_steps(algorithm, state0, data, jax.random.key(5), 2)
  s2, _ = run_steps(algorithm, state0, data, jax.random.key(5), 2)
  chex_close(s1.params, s2.params)
  # Resuming: 2 + 2 steps equal 4 steps of a plain loop (step k draws with the engine's round_keys).
  s4, m4 = run_steps(algorithm, s1, data, jax.random.key(5), 2)
  assert int(s4.round) == 4
  state = state0
  step = jax.jit(algorithm.step)
  for k in range(4):
    _, step_key = engine.round_keys(jax.random.key(5), k)
    state, metrics = step(state, engine.every_client_inputs(data), step_key)
  chex_close(state.params, s4.params)
  np.testing.assert_allclose(metrics['train_loss'], m4['train_loss'][-1], rtol=1e-5)


def test_step_compiles_once():
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  algorithm = dec.gradient_tracking(model, topo_lib.make_topology('random_matchings', N, period=3), 0.1,
                                    batch_size=2)
  traces = []

  def step(state, data, rng):
    traces.append(1)
    return algorithm.step(state, engine.every_client_inputs(data), rng)

  step = jax.jit(step)
  state = algorithm.init(zeros_like_model(model))
  for k in range(4):
    state, _ = step(state, data, jax.random.key(k))
  assert len(traces) == 1


def test_accepts_runner_round_inputs_and_reports_metrics():
  data, _ = least_squares()
  model = models_lib.linear_regression((D,))
  topology = topo_lib.make_topology('ring', N)
  algorithm = dec.dpsgd(model, topology, 0.1, batch_size=2)
  inputs = RoundInputs(data, jnp.arange(N, dtype=jnp.int32), jnp.ones(N, bool), jnp.zeros(N, bool))
  state = algorithm.init(zeros_like_model(model))
  a, metrics = jax.jit(algorithm.step)(state, inputs, jax.random.key(0))
  b, _ = jax.jit(algorithm.step)(state, engine.every_client_inputs(data), jax.random.key(0))
  chex_close(a.params, b.params)
  assert set(metrics) == {'train_loss', 'participants', 'bytes_up', 'bytes_down', 'consensus_error',
                          'learning_rate'}
  assert float(metrics['bytes_down']) == 0.0 and int(metrics['participants']) == N
  assert float(metrics['bytes_up']) == 2 * N * D * 4  # 2 links per node, one float32 model each


def test_node_batches_stay_inside_each_node():
  counts = jnp.asarray([1, 3, 5, 0], jnp.int32)
  x = jnp.arange(4 * 5, dtype=jnp.float32).reshape(4, 5)
  data = FederatedData(x, x, counts)
  bx, _, mask = jax.jit(dec.node_batches, static_argnums=2)(data, jax.random.key(0), 50)
  bx = np.asarray(bx)
  for i, c in enumerate([1, 3, 5]):
    assert set(bx[i]) <= set(np.asarray(x[i, :c]))
    assert len(set(bx[i])) == c  # 50 draws hit every row
  assert not np.asarray(mask[3]).any()  # an empty node contributes nothing


def test_learning_rate_schedule():
  data, _ = least_squares()
  algorithm = dec.dpsgd(models_lib.linear_regression((D,)), topo_lib.make_topology('ring', N),
                        lambda k: 0.1 / (1.0 + k))
  _, metrics = run_steps(algorithm, algorithm.init(zeros_like_model(models_lib.linear_regression((D,)))),
                             data, jax.random.key(0), 3)
  np.testing.assert_allclose(metrics['learning_rate'], [0.1, 0.05, 0.1 / 3], rtol=1e-6)


@pytest.mark.parametrize('builder,kwargs,match', [
    (dec.dpsgd, {'order': 'gossip_first'}, "order='gossip_first'"),
    (dec.dpsgd, {'local_steps': 2}, "needs order='atc'"),
    (dec.dpsgd, {'local_steps': 0, 'order': 'atc'}, 'local_steps=0'),
    (dec.dpsgd, {'batch_size': 0}, 'batch_size=0'),
    (dec.gradient_tracking, {'learning_rate': -0.1}, 'learning_rate=-0.1'),
    (dec.gradient_tracking, {'learning_rate': float('nan')}, 'learning_rate=nan'),
    (dec.dpsgd, {'gossip_impl': 'mpi'}, "impl='mpi'"),
])
def test_bad_config_raises(builder, kwargs, match):
  kwargs = {'learning_rate': 0.1, **kwargs}
  with pytest.raises(ValueError, match=match):
    builder(models_lib.linear_regression((D,)), topo_lib.make_topology('ring', N), **kwargs)


def test_bad_topology_and_data_raise():
  model = models_lib.linear_regression((D,))
  with pytest.raises(ValueError, match='symmetric'):
    dec.exact_diffusion(model, topo_lib.make_topology('one_peer_exponential', 8), 0.1)
  with pytest.raises(ValueError, match='must be a fedjax_lab.topology.Topology'):
    dec.dpsgd(model, np.eye(4), 0.1)
  algorithm = dec.dpsgd(model, topo_lib.make_topology('ring', 6), 0.1)
  data, _ = least_squares(num_nodes=8)
  with pytest.raises(ValueError, match='8 clients but the topology has 6 nodes'):
    algorithm.step(algorithm.init(zeros_like_model(model)), engine.every_client_inputs(data), jax.random.key(0))
