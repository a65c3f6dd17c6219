"""Ray parameter server: same order and result as the simulator, exact update count, reaches the
optimum, a failing or hung worker ends the run with a clear error. One local Ray (2 CPUs) per module."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import engine
from fedjax_lab.algorithms import async_ps as ap
from fedjax_lab.algorithms import data_parallel as dp
from fedjax_lab.runtime import ray_ps

ray = pytest.importorskip('ray')
D = 4


@pytest.fixture(scope='module')
def pool():
  os.environ['RAY_AUTH_MODE'] = 'disabled'
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp())
  workers = ray_ps.ParameterServerPool()
  yield workers
  workers.shutdown()
  ray.shutdown()


def _relative_error(w, w_star):
  return np.linalg.norm(np.asarray(w, np.float64) - w_star) / np.linalg.norm(w_star)


def test_async_order_and_result_match_the_simulator(pool):
  problem = dp.least_squares_problem(64, D, noise=0.5, seed=0, condition_number=3.0)
  shards = dp.shard_data(problem.x, problem.y, 2)
  # Worker 1 is offset by half a period, then both push every 0.6 s: pushes 0.3 s apart, a margin
  # wide enough that a loaded machine (or a late first compile) does not swap two arrivals.
  delays = np.array([[0.6] * 10, [0.3] + [0.6] * 9])
  result = pool.run(dp.least_squares_loss, jnp.zeros(D), shards, 0.3, 8, delays=delays)
  schedule = ap.async_schedule(delays.T, 8)
  np.testing.assert_array_equal(result.worker, schedule.worker)
  np.testing.assert_array_equal(result.read_version, schedule.read_version)
  np.testing.assert_array_equal(result.staleness, schedule.staleness)
  simulated = ap.simulate(dp.least_squares_loss, jnp.zeros(D), shards, ap.async_sgd(2, 0.3), schedule)
  np.testing.assert_allclose(result.params, simulated.params, rtol=1e-5, atol=1e-6)
  assert result.num_updates == 8 and result.wall_clock > 0


def test_async_applies_exactly_the_updates_asked_and_reaches_the_optimum(pool):
  exact = dp.least_squares_problem(96, D, noise=0.0, seed=1, condition_number=1.5)
  shards = dp.shard_data(exact.x, exact.y, 3)
  result = pool.run(dp.least_squares_loss, jnp.zeros(D), shards, 0.5 / exact.lipschitz, 150, damping='inverse',
                    delays=[0.002, 0.002, 0.004])
  assert result.num_updates == 150 and result.worker.shape == (150,)
  assert set(result.worker.tolist()) == {0, 1, 2}
  assert _relative_error(result.params, exact.w_star) < 1e-4, result.staleness.max()


def test_sync_mode_is_data_parallel_gd(pool):
  problem = dp.least_squares_problem(64, D, noise=0.5, seed=2, condition_number=3.0)
  shards = dp.shard_data(problem.x, problem.y, 2)
  result = pool.run(dp.least_squares_loss, jnp.zeros(D), shards, 1.0 / problem.lipschitz, 60, mode='sync')
  assert result.num_updates == 60 and result.worker.shape == (120,)
  assert np.all(result.staleness == 0)
  assert _relative_error(result.params, problem.w_star) < 1e-4
  algorithm = dp.data_parallel_gd(dp.least_squares_loss, 1.0 / problem.lipschitz)
  state, _ = engine.scan_rounds(algorithm, engine.every_client_sampler(shards), algorithm.init(jnp.zeros(D)),
                                jax.random.key(0), 60)
  np.testing.assert_allclose(result.params, state.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('mode', ['async', 'sync'])
def test_a_failing_worker_is_named_and_does_not_hang(pool, mode):
  problem = dp.least_squares_problem(32, D, seed=3)
  shards = dp.shard_data(problem.x, problem.y, 2)
  with pytest.raises(ray_ps.WorkerError, match='worker 1 failed.*injected failure') as info:
    pool.run(dp.least_squares_loss, jnp.zeros(D), shards, 0.1, 10_000, mode=mode, fail_at={1: 3},
             delays=[0.005, 0.005], timeout_s=30)
  assert info.value.worker == 1


def test_a_hung_worker_times_out(pool):
  problem = dp.least_squares_problem(32, D, seed=3)
  shards = dp.shard_data(problem.x, problem.y, 2)
  with pytest.raises(TimeoutError, match=r"training: workers \['1'\]"):
    pool.run(dp.least_squares_loss, jnp.zeros(D), shards, 0.1, 5, mode='sync', delays=[0.0, 60.0], timeout_s=2)


@pytest.mark.parametrize('kwargs, field', [
    (dict(delays=[-0.1, 0.0]), 'delays'),
    (dict(delays=[0.1]), 'delays'),
    (dict(mode='gossip'), 'mode'),
    (dict(buffer_size=3), 'buffer_size'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(num_updates=0), 'num_updates'),
])
def test_rejects_bad_input_before_starting_anything(kwargs, field):
  problem = dp.least_squares_problem(8, 2, seed=0)
  args = dict(loss_fn=dp.least_squares_loss, params=jnp.zeros(2), worker_data=dp.shard_data(problem.x, problem.y, 2),
              learning_rate=0.1, num_updates=3)
  args.update(kwargs)
  with pytest.raises(ValueError, match=field):
    ray_ps.run_parameter_server(**args)
