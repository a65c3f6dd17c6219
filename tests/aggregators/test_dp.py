"""DP-FedAvg's aggregator: clip, sum over participants, N(0, (sigma C)^2), divide by E[cohort]."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.aggregators import dp
from fedjax_lab.transforms.base import make_context


@functools.lru_cache(maxsize=None)
def _compiled(clip_norm, noise_multiplier, expected):
  # One aggregator object per configuration, so repeated calls hit jit's cache.
  return jax.jit(dp.dp_mean(clip_norm, noise_multiplier, expected).aggregate)


def _aggregate(args, updates, weights, key=0):
  ctx = make_context(jnp.asarray(weights, jnp.float32), jax.random.key(key), None)
  return _compiled(*args)(updates, (), ctx)[0]


def _numpy_reference(updates, weights, clip_norm, expected):
  flat = np.concatenate([np.asarray(v).reshape(len(weights), -1) for v in jax.tree.leaves(updates)], axis=1)
  norms = np.linalg.norm(flat.astype(np.float64), axis=1)
  clipped = flat * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-30))[:, None]
  return (clipped * (np.asarray(weights) > 0)[:, None]).sum(0) / expected


def _flat(tree):
  return np.concatenate([np.asarray(v).ravel() for v in jax.tree.leaves(tree)])


@pytest.mark.parametrize('seed', range(4))
def test_noiseless_equals_numpy_reference(seed):
  rng = np.random.default_rng(seed)
  updates = {'a': jnp.asarray(rng.normal(size=(8, 3)) * rng.uniform(0.1, 10, (8, 1)), jnp.float32),
             'b': jnp.asarray(rng.normal(size=(8, 2, 2)), jnp.float32)}
  weights = rng.uniform(0.5, 30, 8) * (rng.uniform(size=8) > 0.3)  # values ignored beyond > 0
  out = _aggregate((1.5, 0.0, 6.0), updates, weights)
  np.testing.assert_allclose(_flat(out), _numpy_reference(updates, weights, 1.5, 6.0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('seed', range(10))
def test_one_client_moves_the_sum_by_at_most_its_clip(seed):
  # Sensitivity: replacing one participant moves the noiseless output by <= 2C / m; removing by <= C / m.
  rng = np.random.default_rng(seed)
  clip, m = 0.8, 5
  base = {'w': jnp.asarray(rng.standard_cauchy(size=(m, 20)) * 10, jnp.float32)}
  other = {'w': base['w'].at[2].set(jnp.asarray(rng.normal(size=20) * 1e3, jnp.float32))}
  agg = (clip, 0.0, m)
  out = _flat(_aggregate(agg, base, np.ones(m)))
  replaced = _flat(_aggregate(agg, other, np.ones(m)))
  removed = _flat(_aggregate(agg, base, np.eye(m)[2] == 0))
  assert np.linalg.norm(out - replaced) <= 2 * clip / m * (1 + 1e-5)
  assert np.linalg.norm(out - removed) <= clip / m * (1 + 1e-5)


def test_noise_std_is_sigma_clip_over_cohort():
  m, sigma, clip = 8, 1.3, 0.5
  updates = {'w': jnp.zeros((m, 200, 100)), 'b': jnp.zeros((m, 10))}
  out = _flat(_aggregate((clip, sigma, m), updates, np.ones(m)))
  # 20010 coordinates: the sample std is within ~1.5 % of the truth with overwhelming probability.
  assert np.std(out) == pytest.approx(sigma * clip / m, rel=0.03)
  assert abs(np.mean(out)) < 4 * sigma * clip / m / np.sqrt(out.size)
  again = _flat(_aggregate((clip, sigma, m), updates, np.ones(m)))
  np.testing.assert_array_equal(out, again)


def test_absent_clients_with_garbage_are_ignored():
  updates = {'w': jnp.array([[1.0, 0.0], [jnp.nan, jnp.inf], [0.0, 3.0]])}
  out = _aggregate((1.0, 0.0, 2.0), updates, [1.0, 0.0, 2.0])
  np.testing.assert_allclose(out['w'], [0.5, 0.5])


@pytest.mark.parametrize('args,match', [
    ((0.0, 1.0, 10), 'clip_norm'), ((-1.0, 1.0, 10), 'clip_norm'), ((1.0, -0.5, 10), 'noise_multiplier'),
    ((1.0, 1.0, 0), 'expected_clients_per_round')])
def test_bad_arguments(args, match):
  with pytest.raises(ValueError, match=match):
    dp.dp_mean(*args)
