"""Deadline participation mask: closed form, per-client determinism, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.data import deadline as deadline_lib


def test_times_are_work_times_lognormal_speed_and_order_free():
  n = jnp.array([10, 20, 40, 80])
  ids = jnp.array([3, 0, 7, 5])
  key = jax.random.key(0)
  times = deadline_lib.simulated_times(key, n, ids, local_epochs=2, seconds_per_example=0.5, speed_sigma=0.0)
  np.testing.assert_allclose(times, np.array([10, 20, 40, 80]) * 2 * 0.5)
  times = deadline_lib.simulated_times(key, n, ids, speed_sigma=0.7)
  perm = jnp.array([2, 0, 3, 1])
  permuted = deadline_lib.simulated_times(key, n[perm], ids[perm], speed_sigma=0.7)
  np.testing.assert_allclose(permuted, times[perm], rtol=1e-6)
  z = np.log(np.asarray(times) / (np.asarray(n) * 1e-3)) / 0.7
  assert np.all(np.abs(z) < 6)


def test_mask_keeps_exactly_the_fast_clients():
  times = jnp.array([0.5, 1.0, 1.5, 3.0])
  np.testing.assert_array_equal(deadline_lib.deadline_mask(times, 1.0), [True, True, False, False])
  np.testing.assert_array_equal(deadline_lib.deadline_mask(times, float('inf')), [True] * 4)


@pytest.mark.parametrize('bad', [0.0, -1.0, float('nan')])
def test_bad_deadline_names_the_field(bad):
  with pytest.raises(ValueError, match=r'config\.deadline'):
    deadline_lib.deadline_mask(jnp.ones(3), bad)
