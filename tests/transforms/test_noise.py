"""Gaussian noise: the right scale, independent per client, and a function of (rng, client id) only."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.transforms import noise
from fedjax_lab.transforms.base import make_context


@functools.lru_cache(maxsize=None)
def _compiled(stddev):
  # One transform object per stddev, so repeated calls hit jit's cache.
  return jax.jit(noise.gaussian_noise(stddev).update)


def _apply(stddev, updates, client_ids, key=0):
  ctx = make_context(jnp.ones(len(client_ids)), jax.random.key(key), None, client_ids=client_ids)
  return _compiled(stddev)(updates, (), ctx)[0]


def test_empirical_std_and_mean():
  updates = {'w': jnp.zeros((4, 100, 50)), 'b': jnp.full((4, 7), 3.0)}
  out = _apply(0.25, updates, jnp.arange(4))
  samples = np.asarray(out['w']).ravel()
  # 20000 draws: the sample std's relative error is ~0.5 %, the mean's ~0.002.
  assert np.std(samples) == pytest.approx(0.25, rel=0.03)
  assert abs(np.mean(samples)) < 0.01
  assert out['b'].shape == (4, 7)


def test_clients_get_independent_noise_that_follows_their_id():
  updates = {'w': jnp.zeros((3, 500))}
  ids = jnp.array([7, 2, 11])
  out = np.asarray(_apply(1.0, updates, ids)['w'])
  assert abs(np.corrcoef(out[0], out[1])[0, 1]) < 0.2
  permuted = np.asarray(_apply(1.0, updates, ids[::-1])['w'])
  np.testing.assert_array_equal(permuted, out[::-1])  # order of the cohort does not matter
  np.testing.assert_array_equal(np.asarray(_apply(1.0, updates, ids)['w']), out)  # deterministic
  assert not np.allclose(np.asarray(_apply(1.0, updates, ids, key=1)['w']), out)


def test_zero_stddev_is_identity():
  updates = {'w': jnp.arange(6.0).reshape(2, 3)}
  np.testing.assert_array_equal(_apply(0.0, updates, jnp.arange(2))['w'], updates['w'])


@pytest.mark.parametrize('bad', [-0.1, float('nan')])
def test_bad_stddev(bad):
  with pytest.raises(ValueError, match='stddev'):
    noise.gaussian_noise(bad)
