"""Krum, Multi-Krum and Bulyan against plain-numpy references (Blanchard et al. 2017 scores)."""

import jax
import numpy as np
import pytest

from fedjax_lab import aggregators
from fedjax_lab.transforms import make_context


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


def ref_scores(x, candidates, f):
  """Score of each candidate: sum of its n - f - 2 smallest squared distances to other candidates."""
  n = len(candidates)
  k = max(n - f - 2, 0)
  scores = {}
  for i in candidates:
    d = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in candidates if j != i)
    scores[i] = sum(d[:k])
  return scores


def ref_multi_krum(updates, weights, f, m=None, weighted=False):
  x = _flatten(updates)
  candidates = [i for i in range(len(weights)) if weights[i] > 0]
  scores = ref_scores(x, candidates, f)
  order = sorted(candidates, key=lambda i: (scores[i], i))
  chosen = order[:(len(candidates) - f) if m is None else m]
  w = np.array([weights[i] if weighted else 1.0 for i in chosen])
  return _unflatten(np.sum(x[chosen] * w[:, None], axis=0) / np.sum(w), updates)


def ref_bulyan(updates, weights, f):
  x = _flatten(updates)
  pool = [i for i in range(len(weights)) if weights[i] > 0]
  theta = len(pool) - 2 * f
  selected = []
  for _ in range(theta):
    scores = ref_scores(x, pool, f)
    pick = min(pool, key=lambda i: (scores[i], i))
    selected.append(pick)
    pool.remove(pick)
  selected.sort()  # ties in distance to the median go to the lower client index
  beta = theta - 2 * f
  out = np.empty(x.shape[1])
  for j in range(x.shape[1]):
    column = x[selected, j]
    med = np.median(column)
    nearest = np.argsort(np.abs(column - med), kind='stable')[:beta]
    out[j] = np.mean(column[nearest])
  return _unflatten(out, updates)


AGGREGATORS = {
    'krum_f1': (aggregators.krum(1, num_clients=16), lambda u, w: ref_multi_krum(u, w, 1, m=1)),
    'multi_krum_default_m': (aggregators.multi_krum(2), lambda u, w: ref_multi_krum(u, w, 2)),
    'multi_krum_m3_weighted': (aggregators.multi_krum(2, m=3, weighted=True),
                               lambda u, w: ref_multi_krum(u, w, 2, m=3, weighted=True)),
    'bulyan_f1': (aggregators.bulyan(1), lambda u, w: ref_bulyan(u, w, 1)),
    'bulyan_f2': (aggregators.bulyan(2, num_clients=16), lambda u, w: ref_bulyan(u, w, 2)),
}
JITTED = {name: jax.jit(agg.aggregate) for name, (agg, _) in AGGREGATORS.items()}


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_matches_numpy_reference(name, cohort, place):
  updates, weights = cohort
  agg, reference = AGGREGATORS[name]
  placed, ctx = place(updates, weights)
  out, _ = JITTED[name](placed, agg.init(None), ctx)
  expected = reference(updates, weights)
  for key in expected:
    np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_krum_ignores_outliers_and_absent_zero_rows():
  # Six honest updates near 1, one Byzantine at 100; two absent rows of zeros sit closest to
  # nothing. Krum must pick an honest update, never 0 (an absent row) or 100.
  rng = np.random.default_rng(0)
  x = np.concatenate([1 + 0.01 * rng.normal(size=(6, 3)), [[100.0] * 3], np.zeros((2, 3))])
  weights = np.array([1] * 7 + [0, 0], np.float32)
  ctx = make_context(weights, jax.random.key(0), None)
  out, _ = jax.jit(aggregators.krum(1).aggregate)({'x': x.astype(np.float32)}, (), ctx)
  assert np.all(np.abs(np.asarray(out['x']) - 1) < 0.1)


def test_breakdown_conditions_name_the_field():
  with pytest.raises(ValueError, match=r'f=4.*n > 2f \+ 2 = 10.*clients_per_round'):
    aggregators.krum(4, num_clients=10)
  aggregators.krum(3, num_clients=9)
  with pytest.raises(ValueError, match='f=2'):
    aggregators.multi_krum(2, num_clients=6)
  with pytest.raises(ValueError, match=r'n >= 4f \+ 3 = 11'):
    aggregators.bulyan(2, num_clients=10)
  aggregators.bulyan(2, num_clients=11)
  with pytest.raises(ValueError, match='f=-1'):
    aggregators.krum(-1)
  with pytest.raises(ValueError, match='m=0'):
    aggregators.multi_krum(1, m=0)
  with pytest.raises(ValueError, match='m=9 exceeds clients_per_round=8'):
    aggregators.multi_krum(1, m=9, num_clients=8)


def test_breakdown_rechecked_from_static_shape_at_trace_time():
  agg = aggregators.krum(3)  # no num_clients: the [C, ...] shape is checked when traced
  ctx = make_context(np.ones(6, np.float32), jax.random.key(0), None)
  with pytest.raises(ValueError, match='clients_per_round'):
    jax.jit(agg.aggregate)({'x': np.zeros((6, 2), np.float32)}, (), ctx)


@pytest.mark.parametrize('f', [0, 5])
def test_krum_scores_match_definition(cohort, f):
  # The scores themselves, not only the argmin, follow Blanchard et al.'s n - f - 2 neighbours.
  from fedjax_lab.aggregators import _robust_utils as ru
  from fedjax_lab.aggregators.krum import krum_scores
  updates, weights = cohort
  x = _flatten(updates)
  candidates = [i for i in range(len(weights)) if weights[i] > 0]
  expected = ref_scores(x, candidates, f)
  scores = jax.jit(lambda u, m: krum_scores(ru.pairwise_sq_distances(u), m, f))(updates, weights > 0)
  scores = np.asarray(scores)
  assert np.all(np.isinf(scores[weights == 0]))
  np.testing.assert_allclose([scores[i] for i in candidates], [expected[i] for i in candidates],
                             rtol=1e-5)
