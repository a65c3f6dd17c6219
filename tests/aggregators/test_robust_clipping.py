"""Centered clipping (stateful) and the norm-bounded mean against plain-numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import aggregators


def _flatten(updates):
  return np.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in updates.values()],
                        axis=1).astype(np.float64)


def _unflatten(vector, updates):
  out, start = {}, 0
  for name, leaf in updates.items():
    size = int(np.prod(leaf.shape[1:]))
    out[name] = vector[start:start + size].reshape(leaf.shape[1:])
    start += size
  return out


def _clip(v, radius):
  norm = np.linalg.norm(v)
  return v * min(1.0, radius / norm) if norm > 0 else v


def ref_centered_clipping(updates, weights, center, tau, iterations, weighted):
  x = _flatten(updates)
  present = weights > 0
  a = np.where(present, weights if weighted else 1.0, 0.0)
  a = a / a.sum()
  v = center.copy()
  for _ in range(iterations):
    v = v + sum(a[i] * _clip(x[i] - v, tau) for i in range(len(x)) if present[i])
  return v


def ref_norm_bounded_mean(updates, weights, max_norm, weighted):
  x = _flatten(updates)
  present = weights > 0
  a = np.where(present, weights if weighted else 1.0, 0.0)
  return _unflatten(sum(a[i] * _clip(x[i], max_norm) for i in range(len(x)) if present[i]) / a.sum(),
                    updates)


PARAMS = {'w': jnp.zeros((3, 2)), 'b': jnp.zeros((4,))}


@pytest.mark.parametrize('weighted', [False, True])
def test_centered_clipping_carries_center(weighted, place, cohort_factory):
  # Two rounds: the second starts from the first round's aggregate, kept in the state.
  agg = aggregators.centered_clipping(tau=1.5, iterations=3, weighted=weighted)
  step = jax.jit(agg.aggregate)
  state = agg.init(PARAMS)
  center = np.zeros(10)
  for seed, ties in ((4, False), (5, True)):
    updates, weights = cohort_factory(seed, ties, 'unequal')
    placed, ctx = place(updates, weights)
    out, state = step(placed, state, ctx)
    center = ref_centered_clipping(updates, weights, center, 1.5, 3, weighted)
    expected = _unflatten(center, updates)
    for key in expected:
      np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(np.asarray(state.center[key]), expected[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('weighted', [True, False])
def test_norm_bounded_mean_matches_reference(weighted, cohort, place):
  updates, weights = cohort
  agg = aggregators.norm_bounded_mean(max_norm=2.0, weighted=weighted)
  placed, ctx = place(updates, weights)
  out, _ = jax.jit(agg.aggregate)(placed, (), ctx)
  expected = ref_norm_bounded_mean(updates, weights, 2.0, weighted)
  for key in expected:
    np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-5, atol=1e-5)


def test_validation():
  with pytest.raises(ValueError, match='tau'):
    aggregators.centered_clipping(tau=0.0)
  with pytest.raises(ValueError, match='iterations'):
    aggregators.centered_clipping(tau=1.0, iterations=0)
  with pytest.raises(ValueError, match='max_norm'):
    aggregators.norm_bounded_mean(max_norm=-1.0)
