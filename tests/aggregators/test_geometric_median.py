"""Geometric median (RFA smoothed Weiszfeld) against a plain-numpy reference."""

import jax
import numpy as np
import pytest

from fedjax_lab import aggregators
from fedjax_lab.transforms import make_context


def _flatten(updates):
  return np.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in updates.values()],
                        axis=1).astype(np.float64)


def ref_weiszfeld(updates, weights, nu, iterations, weighted):
  x = _flatten(updates)
  present = weights > 0
  x, alpha = x[present], (weights[present] if weighted else np.ones(present.sum()))
  alpha = alpha / alpha.sum()
  v = alpha @ x
  for _ in range(iterations):
    beta = alpha / np.maximum(nu, np.linalg.norm(x - v, axis=1))
    v = beta @ x / beta.sum()
  out, start = {}, 0
  for name, leaf in updates.items():
    size = int(np.prod(leaf.shape[1:]))
    out[name] = v[start:start + size].reshape(leaf.shape[1:])
    start += size
  return out


AGGREGATORS = {
    'weighted': (aggregators.geometric_median(nu=1e-6, iterations=4), dict(nu=1e-6, iterations=4, weighted=True)),
    'unweighted_smooth': (aggregators.geometric_median(nu=0.5, iterations=3, weighted=False),
                          dict(nu=0.5, iterations=3, weighted=False)),
}
JITTED = {name: jax.jit(agg.aggregate) for name, (agg, _) in AGGREGATORS.items()}


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_matches_numpy_reference(name, cohort, place):
  updates, weights = cohort
  agg, kwargs = AGGREGATORS[name]
  placed, ctx = place(updates, weights)
  out, _ = JITTED[name](placed, agg.init(None), ctx)
  expected = ref_weiszfeld(updates, weights, **kwargs)
  for key in expected:
    np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_converges_to_geometric_median_and_resists_outliers():
  # Collinear points on a line: the geometric median is the 1-D median (here 2), far from the
  # mean (which the outlier at 1000 drags to ~201).
  x = np.array([[0.0], [1.0], [2.0], [3.0], [1000.0]], np.float32)
  ctx = make_context(np.ones(5, np.float32), jax.random.key(0), None)
  agg = aggregators.geometric_median(iterations=200)
  out, _ = jax.jit(agg.aggregate)({'x': x}, (), ctx)
  assert abs(float(out['x'][0]) - 2.0) < 1e-2


def test_validation():
  with pytest.raises(ValueError, match='nu'):
    aggregators.geometric_median(nu=0.0)
  with pytest.raises(ValueError, match='iterations'):
    aggregators.geometric_median(iterations=0)
