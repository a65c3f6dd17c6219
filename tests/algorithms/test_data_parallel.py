"""Synchronous data-parallel GD: equals full-batch GD, reaches the least-squares optimum on 1 and 8
devices through the engine's placement (a psum across the mesh), run by the engine's one loop."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import engine
from fedjax_lab.algorithms import data_parallel as dp
from fedjax_lab.clients.placement import client_mesh
from fedjax_lab.models import models


@pytest.fixture(scope='module')
def problem():
  return dp.least_squares_problem(120, 6, noise=0.5, seed=0, condition_number=4.0)


def run_iterations(algorithm, params, data, num_iterations):
  """`num_iterations` steps of `algorithm` from `params`, every worker every step (the engine's loop)."""
  return engine.scan_rounds(algorithm, engine.every_client_sampler(data), algorithm.init(params),
                            jax.random.key(0), num_iterations)


def _relative_error(w, w_star):
  return np.linalg.norm(np.asarray(w, np.float64) - w_star) / np.linalg.norm(w_star)


def test_loss_and_gradient_match_numpy(problem):
  rng = np.random.default_rng(0)
  w = rng.normal(size=6).astype(np.float32)
  x, y = problem.x.astype(np.float64), problem.y.astype(np.float64)
  residual = x @ w - y
  np.testing.assert_allclose(dp.least_squares_loss(w, problem.x, problem.y), 0.5 * np.mean(residual**2), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(dp.least_squares_loss)(w, problem.x, problem.y), x.T @ residual / 120,
                             rtol=1e-4, atol=1e-5)
  eig = np.linalg.eigvalsh(x.T @ x / 120)
  np.testing.assert_allclose([problem.lipschitz, problem.strong_convexity], [eig[-1], eig[0]], rtol=1e-6)
  np.testing.assert_allclose(problem.lipschitz / problem.strong_convexity, 4.0, rtol=1e-3)


@pytest.mark.parametrize('placement, num_workers, on_mesh', [
    ('scan', 7, False), ('vmap', 7, False), ('scan', 16, True), ('vmap', 7, True)])
def test_reaches_closed_form_optimum(problem, placement, num_workers, on_mesh):
  if on_mesh and jax.device_count() < 8:
    pytest.skip('needs 8 (fake) devices')
  mesh = client_mesh(8) if on_mesh else None
  data = dp.shard_data(problem.x, problem.y, num_workers)
  algorithm = dp.data_parallel_gd(dp.least_squares_loss, 1.0 / problem.lipschitz, placement, mesh=mesh)
  state, metrics = run_iterations(algorithm, jnp.zeros(6), data, 150)
  assert _relative_error(state.params, problem.w_star) < 1e-4
  np.testing.assert_allclose(metrics['train_loss'][-1], problem.loss_star, rtol=1e-4)
  assert int(state.round) == 150
  np.testing.assert_array_equal(metrics['participants'], num_workers)


def test_iterates_equal_full_batch_gd_for_any_number_of_workers(problem):
  lr = 1.0 / problem.lipschitz
  w = np.zeros(6)
  x, y = problem.x.astype(np.float64), problem.y.astype(np.float64)
  for _ in range(5):
    w = w - lr * x.T @ (x @ w - y) / 120
  # 120 workers: one example each; 9 workers: the last one holds fewer examples.
  for num_workers, placement in ((1, 'scan'), (9, 'vmap'), (120, 'chunked')):
    chunk = 7 if placement == 'chunked' else None
    state, _ = run_iterations(dp.data_parallel_gd(dp.least_squares_loss, lr, placement, chunk),
                              jnp.zeros(6), dp.shard_data(problem.x, problem.y, num_workers), 5)
    np.testing.assert_allclose(state.params, w, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')
def test_mesh_psum_equals_single_device_on_an_mlp():
  # An MLP with several leaves: a missing pcast would scale every gradient by the device count.
  model = models.get_model('mlp', (5,), 3, hidden=(8,))
  params = jax.jit(model.init)(jax.random.key(0))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(37, 5)).astype(np.float32)
  y = rng.integers(0, 3, size=37)
  loss_fn = functools.partial(models.batch_loss, model)
  shards = dp.shard_data(x, y, 10)  # 10 workers on 8 devices: padded with zero-weight workers
  reference = jax.jit(jax.grad(loss_fn))(params, x, y)
  for placement, mesh in (('scan', None), ('scan', client_mesh(8)), ('vmap', client_mesh(8))):
    loss, grad = jax.jit(functools.partial(dp.full_gradient, loss_fn, placement=placement, mesh=mesh))(
        params, shards)
    chex.assert_trees_all_close(grad, reference, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, loss_fn(params, x, y), rtol=1e-5)


def test_engine_linear_regression_model_reaches_optimum(problem):
  model = models.get_model('linear_regression', (6,))
  params = jax.tree.map(jnp.zeros_like, jax.eval_shape(model.init, jax.random.key(0)))
  algorithm = dp.data_parallel_gd(functools.partial(models.batch_loss, model), 1.0 / problem.lipschitz)
  state, _ = run_iterations(algorithm, params, dp.shard_data(problem.x, problem.y, 4), 150)
  assert _relative_error(state.params['Dense_0']['kernel'][:, 0], problem.w_star) < 1e-4


def test_step_compiles_once(problem):
  traces = []

  def loss_fn(w, x, y, mask):
    traces.append(1)
    return dp.least_squares_loss(w, x, y, mask)

  algorithm = dp.data_parallel_gd(loss_fn, 0.1)
  step = jax.jit(algorithm.step)
  state = algorithm.init(jnp.zeros(6))
  inputs = engine.every_client_inputs(dp.shard_data(problem.x, problem.y, 4))
  state, _ = step(state, inputs, None)
  count = len(traces)
  for _ in range(3):
    state, _ = step(state, inputs, None)
  assert len(traces) == count


def test_a_worker_that_does_not_report_is_left_out(problem):
  """participation False: the gradient is the mean over the reporting workers' examples only."""
  data = dp.shard_data(problem.x, problem.y, 4)
  algorithm = dp.data_parallel_gd(dp.least_squares_loss, 0.1)
  inputs = engine.every_client_inputs(data)._replace(participation=jnp.array([True, False, True, True]))
  state, metrics = algorithm.step(algorithm.init(jnp.zeros(6)), inputs, None)
  keep = np.r_[0:30, 60:120]
  x, y = problem.x[keep].astype(np.float64), problem.y[keep].astype(np.float64)
  np.testing.assert_allclose(state.params, -0.1 * x.T @ (-y) / keep.size, rtol=1e-4, atol=1e-6)
  assert int(metrics['participants']) == 3
  nobody = inputs._replace(participation=jnp.zeros(4, bool))
  state, metrics = algorithm.step(algorithm.init(jnp.zeros(6)), nobody, None)
  assert np.isnan(metrics['train_loss']) and int(metrics['participants']) == 0
  np.testing.assert_array_equal(state.params, 0.0)


def test_sharding_pads_and_masks():
  shards = dp.shard_data(np.arange(10.0)[:, None], np.arange(10.0), 4)
  chex.assert_shape(shards.x, (4, 3, 1))
  np.testing.assert_array_equal(shards.mask().sum(1), [3, 3, 3, 1])
  np.testing.assert_allclose(dp.worker_weights(shards), [0.3, 0.3, 0.3, 0.1])
  replicated = dp.replicate_data(np.ones((5, 2)), np.ones(5), 3)
  chex.assert_shape(replicated.x, (3, 5, 2))


@pytest.mark.parametrize('num_workers', [0, -2, 11])
def test_rejects_bad_worker_counts(num_workers):
  with pytest.raises(ValueError, match='num_workers'):
    dp.shard_data(np.ones((10, 2)), np.ones(10), num_workers)


def test_rejects_bad_hyper_parameters():
  with pytest.raises(ValueError, match='learning_rate'):
    dp.data_parallel_gd(dp.least_squares_loss, 0.0)
  with pytest.raises(ValueError, match='placement'):
    dp.data_parallel_gd(dp.least_squares_loss, 0.1, placement='pmap')
  with pytest.raises(ValueError, match='learning_rate'):
    dp.data_parallel_gd(dp.least_squares_loss, float('nan'))
  with pytest.raises(ValueError, match='dim'):
    dp.least_squares_problem(3, 5)
