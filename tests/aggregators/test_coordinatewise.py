"""Coordinate-wise median and trimmed mean against plain-numpy references."""

import jax
import numpy as np
import pytest

from fedjax_lab import aggregators
from fedjax_lab.aggregators import coordinatewise
from fedjax_lab.transforms import make_context


def _per_coordinate(fn, updates, weights):
  """Applies fn(values [n], weights [n]) per coordinate over present clients (weight > 0)."""
  present = weights > 0
  out = {}
  for name, leaf in updates.items():
    flat = leaf.reshape(leaf.shape[0], -1)[present].astype(np.float64)
    out[name] = np.array([fn(flat[:, j], weights[present]) for j in range(flat.shape[1])]
                         ).reshape(leaf.shape[1:])
  return out


def ref_median(values, weights, weighted):
  if not weighted:
    return np.median(values)
  order = np.argsort(values, kind='stable')
  v, c = values[order], np.cumsum(weights[order])
  half = c[-1] / 2
  return 0.5 * (v[np.argmax(c >= half)] + v[np.argmax(c > half)])


def ref_trimmed_mean(values, weights, beta, weighted):
  n = len(values)
  k = int(beta * n)
  order = np.argsort(values, kind='stable')[k:n - k]
  w = weights[order] if weighted else np.ones(len(order))
  return np.sum(values[order] * w) / np.sum(w)


AGGREGATORS = {
    'median': (aggregators.median(), lambda v, w: ref_median(v, w, False)),
    'weighted_median': (aggregators.median(weighted=True), lambda v, w: ref_median(v, w, True)),
    'trimmed_mean_0.1': (aggregators.trimmed_mean(0.1), lambda v, w: ref_trimmed_mean(v, w, 0.1, False)),
    'trimmed_mean_0.3': (aggregators.trimmed_mean(0.3, num_clients=16),
                         lambda v, w: ref_trimmed_mean(v, w, 0.3, False)),
    'weighted_trimmed_mean': (aggregators.trimmed_mean(0.25, weighted=True),
                              lambda v, w: ref_trimmed_mean(v, w, 0.25, True)),
}
JITTED = {name: jax.jit(agg.aggregate) for name, (agg, _) in AGGREGATORS.items()}


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_matches_numpy_reference(name, cohort, place):
  updates, weights = cohort
  agg, reference = AGGREGATORS[name]
  placed, ctx = place(updates, weights)
  out, _ = JITTED[name](placed, agg.init(None), ctx)
  expected = _per_coordinate(reference, updates, weights)
  for key in expected:
    np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_weighted_median_follows_weights():
  # One client holding most of the weight decides the weighted median but not the plain one.
  updates = {'x': np.array([[0.0], [1.0], [2.0], [10.0]], np.float32)}
  weights = np.array([1, 1, 1, 10], np.float32)
  median = jax.jit(coordinatewise.coordinate_median, static_argnums=2)
  assert float(median(updates, weights, False)['x'][0]) == 1.5
  assert float(median(updates, weights, True)['x'][0]) == 10.0


def test_absent_clients_are_excluded_not_zero():
  # Present values are all 5; zeros in absent rows must not pull the median or trimmed mean.
  updates = {'x': np.array([[5.0], [0.0], [5.0], [0.0], [5.0]], np.float32)}
  weights = np.array([1, 0, 1, 0, 1], np.float32)
  for agg in (aggregators.median(), aggregators.median(True), aggregators.trimmed_mean(0.2)):
    ctx = make_context(weights, jax.random.key(0), None)
    out, _ = jax.jit(agg.aggregate)(updates, (), ctx)
    assert float(out['x'][0]) == 5.0


def test_no_present_client_gives_zeros():
  updates = {'x': np.ones((4, 2), np.float32)}
  zeros = np.zeros(4, np.float32)
  for fn in (lambda u, w: coordinatewise.coordinate_median(u, w),
             lambda u, w: coordinatewise.coordinate_median(u, w, weighted=True),
             lambda u, w: coordinatewise.coordinate_trimmed_mean(u, w, 0.2)):
    np.testing.assert_array_equal(np.asarray(jax.jit(fn)(updates, zeros)['x']), 0.0)


def test_trimmed_mean_validation():
  with pytest.raises(ValueError, match='beta'):
    aggregators.trimmed_mean(0.5)
  with pytest.raises(ValueError, match='beta'):
    aggregators.trimmed_mean(-0.1)
  with pytest.raises(ValueError, match='clients_per_round'):
    aggregators.trimmed_mean(0.2, num_clients=0)
