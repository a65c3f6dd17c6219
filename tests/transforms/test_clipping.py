"""Per-client clipping bounds every client's norm and leaves small updates alone (numpy reference)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.transforms import clipping
from fedjax_lab.transforms.base import make_context


def _random_updates(rng, num_clients):
  """A two-leaf pytree whose client norms span nine orders of magnitude (and one zero client)."""
  scales = 10.0 ** rng.uniform(-4, 5, size=num_clients)
  scales[0] = 0.0
  a = rng.normal(size=(num_clients, 3, 4)) * scales[:, None, None]
  b = rng.standard_cauchy(size=(num_clients, 5)) * scales[:, None]
  return {'a': jnp.asarray(a, jnp.float32), 'b': jnp.asarray(b, jnp.float32)}


def _numpy_clip(updates, clip_norm):
  flat = np.concatenate([np.asarray(updates['a']).reshape(len(updates['a']), -1),
                         np.asarray(updates['b'])], axis=1).astype(np.float64)
  norms = np.linalg.norm(flat, axis=1)
  scale = np.minimum(1.0, clip_norm / np.where(norms > 0, norms, 1.0))
  return flat * scale[:, None], norms


@pytest.mark.parametrize('clip_norm', [1e-3, 0.7, 50.0])
def test_clipping_bounds_every_client(clip_norm):
  transform = clipping.clip_by_client_norm(clip_norm)
  update = jax.jit(transform.update)
  for seed in range(5):
    _check_one_draw(np.random.default_rng(seed), clip_norm, transform, update)


def _check_one_draw(rng, clip_norm, transform, update):
  updates = _random_updates(rng, 16)
  ctx = make_context(jnp.ones(16), jax.random.key(0), params=None)
  clipped, _ = update(updates, transform.init(None), ctx)
  norms = np.asarray(clipping.client_norms(clipped))
  assert np.all(norms <= clip_norm * (1 + 1e-5))
  expected, raw_norms = _numpy_clip(updates, clip_norm)
  got = np.concatenate([np.asarray(clipped['a']).reshape(16, -1), np.asarray(clipped['b'])], axis=1)
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-9 * clip_norm)
  # Clients already inside the ball are untouched; the others land on the sphere.
  inside = raw_norms <= clip_norm
  flat_in = np.concatenate([np.asarray(updates['a']).reshape(16, -1), np.asarray(updates['b'])], axis=1)
  np.testing.assert_array_equal(got[inside], flat_in[inside])
  np.testing.assert_allclose(norms[~inside], clip_norm, rtol=1e-5)
  chex.assert_trees_all_equal_shapes_and_dtypes(clipped, updates)


def test_norms_match_numpy():
  updates = _random_updates(np.random.default_rng(3), 6)
  _, expected = _numpy_clip(updates, 1.0)
  np.testing.assert_allclose(clipping.client_norms(updates), expected, rtol=1e-5)


@pytest.mark.parametrize('bad', [0.0, -1.0, float('nan'), float('inf')])
def test_bad_clip_norm(bad):
  with pytest.raises(ValueError, match='clip_norm'):
    clipping.clip_by_client_norm(bad)
