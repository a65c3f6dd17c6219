"""Simulated asynchronous parameter server: schedule, ring-buffer replay vs a numpy reference, sync
equivalence, bounded staleness, FedBuff, validation."""

import jax.numpy as jnp
import numpy as np
import pytest

import jax

from fedjax_lab import engine
from fedjax_lab import systems
from fedjax_lab.algorithms import async_ps as ap
from fedjax_lab.algorithms import data_parallel as dp

D = 5


@pytest.fixture(scope='module')
def problem():
  return dp.least_squares_problem(96, D, noise=0.5, seed=1, condition_number=3.0)


def run_iterations(algorithm, params, data, num_iterations):
  return engine.scan_rounds(algorithm, engine.every_client_sampler(data), algorithm.init(params),
                            jax.random.key(0), num_iterations)


def _relative_error(w, w_star):
  return np.linalg.norm(np.asarray(w, np.float64) - w_star) / np.linalg.norm(w_star)


def _numpy_replay(x_shards, y_shards, mask, config, schedule):
  """Stores every version; applies the update rule arrival by arrival (float64)."""
  versions = [np.zeros(D)]
  params, accumulated = np.zeros(D), np.zeros(D)
  weights = ap.staleness_weights(schedule.staleness, config.damping).astype(np.float64)
  for u, worker in enumerate(schedule.worker):
    w = versions[schedule.read_version[u]]
    x, y, m = x_shards[worker], y_shards[worker], mask[worker]
    grad = x[m].T @ (x[m] @ w - y[m]) / m.sum()
    accumulated = accumulated + weights[u] * grad
    if schedule.server_step[u]:
      params = params - config.learning_rate / config.buffer_size * accumulated
      accumulated = np.zeros(D)
      versions.append(params)
  return params


def test_schedule_of_two_workers_by_hand():
  # Worker 0 takes 1 s per gradient, worker 1 takes 2.5 s; messages take 0.
  compute = np.array([[1.0, 2.5]] * 6)
  schedule = ap.async_schedule(compute, 5)
  np.testing.assert_array_equal(schedule.worker, [0, 0, 1, 0, 0])
  np.testing.assert_allclose(schedule.arrival_time, [1, 2, 2.5, 3, 4])
  np.testing.assert_array_equal(schedule.read_version, [0, 1, 0, 2, 4])
  np.testing.assert_array_equal(schedule.staleness, [0, 0, 2, 1, 0])
  assert schedule.num_versions == 5
  # With messages of 0.25 s the cycle of worker 0 is 1.5 s: pushes land at 1.25, 2.75, ...
  schedule = ap.async_schedule(compute, 3, message_seconds=0.25)
  np.testing.assert_allclose(schedule.arrival_time, [1.25, 2.75, 2.75])
  np.testing.assert_array_equal(schedule.worker, [0, 0, 1])


def test_equal_speeds_without_communication_is_synchronous_sgd(problem):
  m, rounds, lr = 4, 6, 0.1
  shards = dp.shard_data(problem.x, problem.y, m)
  result = ap.run_async(dp.least_squares_loss, jnp.zeros(D), shards, ap.async_sgd(m, lr), m * rounds)
  np.testing.assert_array_equal(result.schedule.worker, np.tile(np.arange(m), rounds))
  np.testing.assert_array_equal(result.schedule.staleness, np.tile(np.arange(m), rounds))
  np.testing.assert_array_equal(result.schedule.read_version, np.repeat(np.arange(rounds) * m, m))
  # Synchronous SGD with the same gradient order: all m gradients at the round's parameters,
  # applied one after another.
  x, y = np.asarray(shards.x, np.float64), np.asarray(shards.y, np.float64)
  w = np.zeros(D)
  for _ in range(rounds):
    grads = [x[i].T @ (x[i] @ w - y[i]) / x.shape[1] for i in range(m)]
    for g in grads:
      w = w - lr * g
  np.testing.assert_allclose(result.params, w, rtol=1e-5, atol=1e-6)
  # ... which is data-parallel gradient descent with step m * lr.
  state, _ = run_iterations(dp.data_parallel_gd(dp.least_squares_loss, m * lr), jnp.zeros(D), shards, rounds)
  np.testing.assert_allclose(result.params, state.params, rtol=1e-5, atol=1e-6)


def test_fedbuff_with_k_equal_m_and_equal_speeds_is_data_parallel_gd(problem):
  m, rounds, lr = 4, 5, 0.5
  shards = dp.shard_data(problem.x, problem.y, m)
  result = ap.run_async(dp.least_squares_loss, jnp.zeros(D), shards, ap.fedbuff(m, lr, m), m * rounds)
  assert result.schedule.staleness.max() == 0 and result.schedule.num_versions == rounds
  state, _ = run_iterations(dp.data_parallel_gd(dp.least_squares_loss, lr), jnp.zeros(D), shards, rounds)
  np.testing.assert_allclose(result.params, state.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('config', [
    ap.async_sgd(6, 0.05),
    ap.damped_async_sgd(6, 0.2, 'inverse'),
    ap.stale_synchronous(6, 0.1, 1),
    ap.fedbuff(6, 0.3, 3),
])
def test_ring_buffer_replay_equals_numpy_reference(problem, config):
  shards = dp.shard_data(problem.x, problem.y, 6)
  compute = ap.draw_compute_seconds(60, 6, 1.0, systems.StragglerModel('lognormal', scale=0.8), seed=2)
  schedule = ap.async_schedule(compute, 60, 0.05, config.staleness_bound, config.buffer_size)
  assert schedule.staleness.max() >= 3  # the ring buffer is exercised
  result = ap.simulate(dp.least_squares_loss, jnp.zeros(D), shards, config, schedule,
                       eval_fn=lambda w: dp.least_squares_loss(w, problem.x, problem.y), eval_every=20)
  expected = _numpy_replay(*(np.asarray(a, np.float64) for a in shards[:2]), np.asarray(shards.mask()), config,
                           schedule)
  np.testing.assert_allclose(result.params, expected, rtol=1e-4, atol=1e-5)
  assert result.eval_loss.shape == (3,) and result.worker_loss.shape == (60,)
  np.testing.assert_allclose(result.eval_loss[-1], dp.least_squares_loss(expected, problem.x, problem.y), rtol=1e-4)


def test_stale_synchronous_bounds_clock_gap_and_staleness():
  m, s = 5, 1
  compute = ap.draw_compute_seconds(300, m, 1.0, systems.fixed(1, 20.0), seed=0)
  free = ap.async_schedule(compute, 300, 0.1)
  bounded = ap.async_schedule(compute, 300, 0.1, staleness_bound=s)
  assert free.staleness.max() > ap.ssp_staleness_bound(m, s)  # the slow worker is very stale
  assert bounded.staleness.max() <= ap.ssp_staleness_bound(m, s)
  clocks = np.zeros(m, int)
  for worker in bounded.worker:  # nobody pushes more than s + 1 ahead of the slowest
    clocks[worker] += 1
    assert clocks.max() - clocks.min() <= s + 1
  assert bounded.wall_clock > free.wall_clock  # waiting costs time
  assert np.any(bounded.segments.kind == systems.timeline.WAIT)
  zero = ap.async_schedule(compute, 100, 0.1, staleness_bound=0)
  np.testing.assert_array_equal(np.bincount(zero.worker, minlength=m), [20] * m)  # lock-step


def test_bounded_staleness_reaches_optimum_with_step_from_lipschitz_constant(problem):
  m, s = 4, 1
  tau = ap.ssp_staleness_bound(m, s)
  lr = 1.0 / (problem.lipschitz * (1 + 2 * tau))  # delayed gradient descent's safe step
  result = ap.run_async(dp.least_squares_loss, jnp.zeros(D), dp.replicate_data(problem.x, problem.y, m),
                        ap.stale_synchronous(m, lr, s), 2000, message_seconds=0.1,
                        stragglers=systems.StragglerModel('exponential', scale=2.0), seed=0)
  assert result.schedule.staleness.max() <= tau
  assert _relative_error(result.params, problem.w_star) < 1e-4


def test_plain_async_reaches_optimum_when_the_system_is_consistent():
  # Without label noise every shard's gradient vanishes at w_star, so constant-step async SGD
  # converges to it despite stragglers and staleness.
  exact = dp.least_squares_problem(96, D, noise=0.0, seed=3, condition_number=3.0)
  m = 8
  result = ap.run_async(dp.least_squares_loss, jnp.zeros(D), dp.shard_data(exact.x, exact.y, m),
                        ap.damped_async_sgd(m, 0.5 / exact.lipschitz), 1200, message_seconds=0.05,
                        stragglers=systems.bernoulli(0.25, 10.0), seed=1)
  assert _relative_error(result.params, exact.w_star) < 1e-4


def test_same_seed_same_schedule():
  a = ap.draw_compute_seconds(40, 4, 1.0, systems.StragglerModel('half_normal', scale=1.0), 5)
  b = ap.draw_compute_seconds(40, 4, 1.0, systems.StragglerModel('half_normal', scale=1.0), 5)
  sa, sb = ap.async_schedule(a, 40, 0.1, 2, 2), ap.async_schedule(b, 40, 0.1, 2, 2)
  for field in ('worker', 'read_version', 'staleness', 'server_step', 'arrival_time'):
    np.testing.assert_array_equal(getattr(sa, field), getattr(sb, field))


@pytest.mark.parametrize('make, field', [
    (lambda: ap.async_sgd(0, 0.1), 'num_workers'),
    (lambda: ap.async_sgd(4, -0.1), 'learning_rate'),
    (lambda: ap.stale_synchronous(4, 0.1, -1), 'staleness_bound'),
    (lambda: ap.fedbuff(4, 0.1, 5), 'buffer_size'),
    (lambda: ap.fedbuff(4, 0.1, 0), 'buffer_size'),
    (lambda: ap.damped_async_sgd(4, 0.1, 'cubic'), 'damping'),
    (lambda: ap.async_schedule(-np.ones((3, 2)), 3), 'negative delay'),
    (lambda: ap.async_schedule(np.ones((3, 2)), 3, message_seconds=-1.0), 'message_seconds'),
    (lambda: ap.async_schedule(np.ones((3, 2)), 3, staleness_bound=-2), 'staleness_bound'),
    (lambda: ap.async_schedule(np.ones((3, 2)), 3, buffer_size=3), 'buffer_size'),
    (lambda: ap.async_schedule(np.ones((3, 0)), 3), 'm >= 1'),
    (lambda: ap.draw_compute_seconds(3, 2, -1.0, systems.StragglerModel(), 0), 'seconds_per_gradient'),
])
def test_rejects_bad_input(make, field):
  with pytest.raises(ValueError, match=field):
    make()


def test_rejects_mismatched_data_and_eval_every(problem):
  schedule = ap.async_schedule(np.ones((6, 2)), 6)
  shards = dp.shard_data(problem.x, problem.y, 3)
  with pytest.raises(ValueError, match='num_workers'):
    ap.simulate(dp.least_squares_loss, jnp.zeros(D), shards, ap.async_sgd(2, 0.1), schedule)
  shards = dp.shard_data(problem.x, problem.y, 2)
  with pytest.raises(ValueError, match='eval_every'):
    ap.simulate(dp.least_squares_loss, jnp.zeros(D), shards, ap.async_sgd(2, 0.1), schedule, eval_every=4)
