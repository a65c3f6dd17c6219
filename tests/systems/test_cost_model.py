"""Cost model: closed-form communication times, barrier waits, speedup, straggler effect, validation."""

import math

import numpy as np
import pytest

from fedjax_lab import systems
from fedjax_lab.algorithms import async_ps


def test_message_and_sync_communication_match_alpha_beta_formulas():
  net = systems.Network(bandwidth=1e6, latency=0.01, topology='server')
  np.testing.assert_allclose(systems.message_seconds(2e6, net), 0.01 + 2.0)
  m = np.array([1, 2, 4, 16])
  np.testing.assert_allclose(systems.sync_communication_seconds(2e6, m, net), 2 * m * (0.01 + 2.0))
  ring = net._replace(topology='ring')
  np.testing.assert_allclose(systems.sync_communication_seconds(2e6, m, ring),
                             2 * (m - 1) * (0.01 + 2e6 / (m * 1e6)))
  assert systems.sync_communication_seconds(2e6, 1, ring) == 0.0  # nobody to talk to
  np.testing.assert_allclose(systems.bytes_sent_per_worker(100.0, m, 'ring'), 2 * (m - 1) / m * 100.0)
  np.testing.assert_allclose(systems.async_communication_seconds(2e6, net), 2 * (0.01 + 2.0))
  assert systems.sync_communication_seconds(1e9, 8, systems.Network()) == 0.0  # infinite bandwidth


def test_sync_timeline_waits_for_the_slowest_worker():
  compute = np.array([[1.0, 3.0, 2.0], [2.0, 2.0, 5.0]])
  timeline = systems.sync_timeline(compute, 0.5)
  np.testing.assert_allclose(timeline.wait, [[2.0, 0.0, 1.0], [3.0, 3.0, 0.0]])
  np.testing.assert_allclose(timeline.iteration_seconds, [3.5, 5.5])
  np.testing.assert_allclose(timeline.start, [0.0, 3.5])
  np.testing.assert_allclose(timeline.end, [3.5, 9.0])
  np.testing.assert_allclose(timeline.compute + timeline.wait, [[3.0] * 3, [5.0] * 3])
  segments = systems.sync_segments(timeline)
  for worker in range(3):  # every worker's intervals tile [0, end] exactly
    rows = segments.worker == worker
    np.testing.assert_allclose(np.sum(segments.end[rows] - segments.start[rows]), 9.0)
  np.testing.assert_allclose(systems.busy_fraction(segments, 3, 9.0), compute.sum(0) / 9.0)


def test_one_10x_straggler_slows_sync_5x_but_not_async():
  m, iterations = 16, 50
  network = systems.Network(bandwidth=1e9, latency=1e-4, topology='ring')
  work = 1.0  # seconds per gradient on a nominal worker
  comm = systems.sync_communication_seconds(4e4, m, network)
  clean = systems.sample_slowdowns(systems.StragglerModel(), iterations, m, 0)
  slow = systems.sample_slowdowns(systems.fixed(1, 10.0), iterations, m, 0)
  sync_clean = systems.sync_timeline(work * clean, comm).end[-1]
  sync_slow = systems.sync_timeline(work * slow, comm).end[-1]
  assert sync_slow >= 5 * sync_clean
  # Asynchronous: the same number of gradients (m per synchronous iteration).
  message = float(systems.message_seconds(4e4, network))
  async_clean = async_ps.async_schedule(work * systems.sample_slowdowns(systems.StragglerModel(), m * iterations, m, 0),
                                        m * iterations, message).wall_clock
  async_slow = async_ps.async_schedule(work * systems.sample_slowdowns(systems.fixed(1, 10.0), m * iterations, m, 0),
                                       m * iterations, message).wall_clock
  assert async_slow < 1.2 * async_clean
  assert async_slow < sync_slow / 5


def test_speedup_is_ideal_without_costs_below_m_with_them_and_falls_with_communication():
  m = np.array([1, 2, 4, 8, 16, 32, 64])
  ideal = systems.sync_speedup(m, serial_seconds=1.0, num_bytes=4e5, network=systems.Network())
  np.testing.assert_allclose(ideal.speedup, m)
  previous = None
  for bandwidth in (1e10, 1e9, 1e8):
    for topology in ('server', 'ring'):
      curve = systems.sync_speedup(m, 1.0, 4e5, systems.Network(bandwidth, 1e-4, topology))
      assert np.all(curve.speedup[1:] < m[1:])  # m = 1 in a ring sends nothing
      assert np.all(curve.speedup <= m)
      np.testing.assert_allclose(curve.compute + curve.wait + curve.communication, curve.iteration_seconds)
      np.testing.assert_allclose(curve.efficiency, curve.speedup / m)
    if previous is not None:
      assert np.all(curve.speedup[1:] < previous.speedup[1:])  # more expensive links: slower
    previous = curve


def test_speedup_with_random_stragglers_pays_for_the_barrier():
  m = np.array([2, 8, 32])
  curve = systems.sync_speedup(m, 1.0, 0.0, systems.Network(), stragglers=systems.StragglerModel(
      'exponential', scale=1.0), num_iterations=200, seed=3)
  assert np.all(curve.wait > 0)
  assert np.all(curve.speedup < m)
  # E[max of m shifted exponentials] = 1 + H_m: the speedup is m / (1 + H_m) on average.
  harmonic = np.array([sum(1 / k for k in range(1, mk + 1)) for mk in m])
  np.testing.assert_allclose(curve.speedup, m / (1 + harmonic), rtol=0.1)


def test_measured_worker_seconds_are_used():
  m = np.array([1, 2, 4])
  curve = systems.sync_speedup(m, 1.0, 0.0, systems.Network(), worker_seconds=[1.0, 0.6, 0.4])
  np.testing.assert_allclose(curve.speedup, [1.0, 1 / 0.6, 2.5])


def test_least_squares_flops():
  assert systems.least_squares_gradient_flops(10, 3) == 4 * 10 * 3 + 10


@pytest.mark.parametrize('num_workers', [0, -1, 2.5, [4, 0]])
def test_rejects_fewer_than_one_worker(num_workers):
  with pytest.raises(ValueError, match='num_workers'):
    systems.sync_speedup(num_workers, 1.0, 1.0, systems.Network())


@pytest.mark.parametrize('network, field', [
    (systems.Network(bandwidth=0.0), 'bandwidth'),
    (systems.Network(bandwidth=-1.0), 'bandwidth'),
    (systems.Network(latency=-1e-3), 'latency'),
    (systems.Network(latency=math.nan), 'latency'),
    (systems.Network(topology='tree'), 'topology'),
])
def test_rejects_bad_networks(network, field):
  with pytest.raises(ValueError, match=field):
    systems.sync_communication_seconds(1.0, 4, network)


def test_rejects_negative_times_and_sizes():
  with pytest.raises(ValueError, match='compute'):
    systems.sync_timeline(np.array([[1.0, -0.5]]), 0.0)
  with pytest.raises(ValueError, match='communication'):
    systems.sync_timeline(np.ones((2, 2)), -1.0)
  with pytest.raises(ValueError, match='num_bytes'):
    systems.message_seconds(-1.0, systems.Network())
  with pytest.raises(ValueError, match='flops_per_second'):
    systems.compute_seconds(1.0, 0.0, np.ones((1, 1)))
  with pytest.raises(ValueError, match='serial_seconds'):
    systems.sync_speedup([2], 0.0, 1.0, systems.Network())
