"""Defences on one update: each does what its name says (closed forms), through the training Transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.privacy import defenses


def _update(seed=0):
  rng = np.random.default_rng(seed)
  return {'kernel': jnp.asarray(rng.normal(size=(40, 25)), jnp.float32),
          'bias': jnp.asarray(rng.normal(size=(25,)), jnp.float32)}


def _flat(tree):
  return np.concatenate([np.asarray(v).ravel() for v in jax.tree.leaves(tree)])


def test_none_and_noise():
  update = _update()
  np.testing.assert_array_equal(_flat(defenses.defend(update, 'none', 0.0, jax.random.key(0))), _flat(update))
  noisy = _flat(defenses.defend(update, 'noise', 0.5, jax.random.key(0))) - _flat(update)
  assert np.std(noisy) == pytest.approx(0.5, rel=0.06)  # 1025 draws


def test_clip_scales_to_the_norm():
  update = _update()
  out = _flat(defenses.defend(update, 'clip', 2.0, jax.random.key(0)))
  assert np.linalg.norm(out) == pytest.approx(2.0, rel=1e-5)
  np.testing.assert_allclose(out / np.linalg.norm(out), _flat(update) / np.linalg.norm(_flat(update)), atol=1e-6)


def test_topk_keeps_the_largest_coordinates():
  update = _update()
  flat = _flat(update)
  out = _flat(defenses.defend(update, 'topk', 0.9, jax.random.key(0)))
  k = int(round(0.1 * flat.size))
  assert np.count_nonzero(out) == k
  kept = np.flatnonzero(out)
  np.testing.assert_array_equal(out[kept], flat[kept])
  assert np.min(np.abs(flat[kept])) >= np.max(np.abs(np.delete(flat, kept)))


def test_quantize_uses_two_to_the_bits_levels():
  update = _update()
  flat = _flat(update)
  out = _flat(defenses.defend(update, 'quantize', 2, jax.random.key(0)))
  levels = np.linspace(flat.min(), flat.max(), 4)
  assert np.max(np.min(np.abs(out[:, None] - levels[None]), axis=1)) < 1e-5
  assert np.max(np.abs(out - flat)) <= (flat.max() - flat.min()) / 3 + 1e-5


@pytest.mark.parametrize('name,strength,match', [('shuffle', 1.0, 'defense'), ('topk', 1.0, 'fraction'),
                                                 ('clip', 0.0, 'clip_norm'), ('noise', -1.0, 'stddev')])
def test_bad_defense(name, strength, match):
  with pytest.raises(ValueError, match=match):
    defenses.defense_transform(name, strength, num_params=10)
