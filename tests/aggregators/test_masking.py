"""Excluded clients cannot leak (issue 13, item 5).

A client with weight 0 (dropped, padding, rejected) may hold NaN, Inf or 1e30 in its slot. Every
aggregator must give the same result as on the included rows alone (plain-numpy references), the
same bits whatever the excluded slots hold, and the same bits in its stacked and streaming forms.
Included non-finite updates are handled as each rule documents. Breakdown conditions are evaluated
per round on the reporting clients, and every robust rule derives its parameter from one f.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import aggregators
from fedjax_lab.aggregators import base
from fedjax_lab.algorithms import fedavg
from fedjax_lab.data import pack_clients, sample_round, to_device
from fedjax_lab.models import models
from fedjax_lab.privacy.dp import participant_mean
from fedjax_lab.transforms import make_context

C = 12
PARAMS = {'w': jnp.zeros((3, 2), jnp.float32), 'b': jnp.zeros((4,), jnp.float32)}
GARBAGE = {'nan': np.nan, 'inf': np.inf, 'neg_inf': -np.inf, 'huge': 1e30}


def _cohort(seed=0, excluded=(1, 5, 10), garbage=np.nan):
  """updates {'w': [C, 3, 2], 'b': [C, 4]}, weights [C] (integers 1..9, 0 where excluded)."""
  rng = np.random.default_rng(seed)
  updates = {'w': rng.normal(size=(C, 3, 2)).astype(np.float32),
             'b': rng.normal(size=(C, 4)).astype(np.float32)}
  weights = rng.integers(1, 10, C).astype(np.float32)
  weights[list(excluded)] = 0.0
  for leaf in updates.values():
    leaf[list(excluded)] = garbage
    leaf[excluded[0], 0] = -garbage if garbage == garbage else 7.0  # mixed signs in one slot
  return updates, weights


def _flat(updates):
  """[C, D] float64, leaves flattened in tree order."""
  return np.concatenate([np.asarray(l, np.float64).reshape(C, -1) for l in jax.tree.leaves(updates)], axis=1)


def _flat_one(update):
  """One aggregate (leaves [...]) as a float64 vector [D], leaves in tree order."""
  return np.concatenate([np.asarray(l, np.float64).ravel() for l in jax.tree.leaves(update)])


def _unflat(vector):
  out, start = [], 0
  for leaf in jax.tree.leaves(PARAMS):
    out.append(vector[start:start + leaf.size].reshape(leaf.shape))
    start += leaf.size
  return jax.tree.unflatten(jax.tree.structure(PARAMS), out)


# ----------------------------------------------------------------------------- numpy references
# Each takes the included rows only: x [n, D] float64 and their weights w [n].


def ref_mean(x, w):
  return (w[:, None] * x).sum(0) / w.sum()


def ref_norm_bounded(x, w, max_norm, weighted=True):
  norms = np.linalg.norm(x, axis=1)
  clipped = x * np.minimum(1.0, max_norm / np.maximum(norms, 1e-300))[:, None]
  w = w if weighted else np.ones_like(w)
  return (w[:, None] * clipped).sum(0) / w.sum()


def _krum_scores(x, f):
  n = len(x)
  d = ((x[:, None] - x[None]) ** 2).sum(-1)
  k = max(n - f - 2, 0)
  return np.array([np.sort(np.delete(d[i], i))[:k].sum() for i in range(n)])


def ref_multi_krum(x, w, f, m=None):
  del w
  n = len(x)
  order = np.argsort(_krum_scores(x, f), kind='stable')
  m = max(n - f, 1) if m is None else m
  return x[order[:m]].mean(0)


def ref_bulyan(x, w, f):
  del w
  pool = list(range(len(x)))
  theta = len(x) - 2 * f
  chosen = []
  for _ in range(theta):
    scores = _krum_scores(x[pool], f)
    chosen.append(pool.pop(int(np.argmin(scores))))
  s = x[chosen]
  beta = theta - 2 * f
  med = np.median(s, axis=0)
  order = np.argsort(np.abs(s - med), axis=0, kind='stable')
  return np.take_along_axis(s, order[:beta], axis=0).mean(0)


def ref_median(x, w):
  del w
  return np.median(x, axis=0)


def ref_trimmed_mean(x, w, trim):
  del w
  s = np.sort(x, axis=0)
  return s[trim:len(x) - trim].mean(0)


def ref_geometric_median(x, w, nu=1e-6, iterations=5):
  alpha = w / w.sum()
  v = (alpha[:, None] * x).sum(0)
  for _ in range(iterations):
    beta = alpha / np.maximum(nu, np.linalg.norm(x - v, axis=1))
    v = (beta[:, None] * x).sum(0) / beta.sum()
  return v


def ref_centered_clipping(x, w, tau, iterations, center=None):
  del w
  v = np.zeros(x.shape[1]) if center is None else center
  for _ in range(iterations):
    diff = x - v
    norms = np.linalg.norm(diff, axis=1)
    v = v + (diff * np.minimum(1.0, tau / np.maximum(norms, 1e-300))[:, None]).mean(0)
  return v


def ref_dp_mean(x, w, clip_norm, expected):
  del w
  return ref_norm_bounded(x, np.ones(len(x)), clip_norm, weighted=False) * len(x) / expected


# name -> (builder, reference(x, w)).
CASES = {
    'mean': (aggregators.mean, ref_mean),
    'norm_bounded_mean': (lambda: aggregators.norm_bounded_mean(0.8), lambda x, w: ref_norm_bounded(x, w, 0.8)),
    'norm_bounded_mean_uniform': (lambda: aggregators.norm_bounded_mean(0.8, weighted=False),
                                  lambda x, w: ref_norm_bounded(x, w, 0.8, weighted=False)),
    'krum': (lambda: aggregators.krum(2, num_clients=C), lambda x, w: ref_multi_krum(x, w, 2, 1)),
    'multi_krum': (lambda: aggregators.multi_krum(2, num_clients=C), lambda x, w: ref_multi_krum(x, w, 2)),
    'bulyan': (lambda: aggregators.bulyan(1, num_clients=C), lambda x, w: ref_bulyan(x, w, 1)),
    'median': (aggregators.median, ref_median),
    'trimmed_mean_f': (lambda: aggregators.trimmed_mean(f=2, num_clients=C),
                       lambda x, w: ref_trimmed_mean(x, w, 2)),
    'trimmed_mean_beta': (lambda: aggregators.trimmed_mean(0.2, num_clients=C),
                          lambda x, w: ref_trimmed_mean(x, w, int(0.2 * len(x)))),
    'geometric_median': (aggregators.geometric_median, ref_geometric_median),
    'centered_clipping': (lambda: aggregators.centered_clipping(tau=0.7, iterations=3),
                          lambda x, w: ref_centered_clipping(x, w, 0.7, 3)),
    'dp_mean': (lambda: aggregators.dp_mean(0.9, 0.0, 9.0), lambda x, w: ref_dp_mean(x, w, 0.9, 9.0)),
    'participant_mean': (participant_mean, lambda x, w: x.mean(0)),
}
STREAMING = ['mean', 'norm_bounded_mean', 'norm_bounded_mean_uniform', 'dp_mean', 'participant_mean']


def _aggregate(name, updates, weights, seed=0):
  agg = CASES[name][0]()
  ctx = make_context(weights, jax.random.key(seed), PARAMS)
  out, _ = jax.jit(agg.aggregate)(jax.tree.map(jnp.asarray, updates), agg.init(PARAMS), ctx)
  return out


@pytest.mark.parametrize('garbage', list(GARBAGE), ids=list(GARBAGE))
@pytest.mark.parametrize('name', list(CASES))
def test_excluded_rows_match_numpy_reference_on_included_rows(name, garbage):
  updates, weights = _cohort(seed=3, garbage=GARBAGE[garbage])
  out = _aggregate(name, updates, weights)
  keep = weights > 0
  expected = _unflat(CASES[name][1](_flat(updates)[keep], weights[keep].astype(np.float64)))
  for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(expected)):
    assert np.all(np.isfinite(np.asarray(got))), (name, garbage)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize('name', list(CASES))
def test_result_bits_do_not_depend_on_what_excluded_rows_hold(name):
  results = [_aggregate(name, *_cohort(seed=4, garbage=g)) for g in (0.0, np.nan, np.inf, -1e30)]
  for other in results[1:]:
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(other)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('garbage', list(GARBAGE), ids=list(GARBAGE))
@pytest.mark.parametrize('name', STREAMING)
def test_stacked_and_streaming_forms_agree_bit_for_bit(name, garbage):
  agg = CASES[name][0]()
  assert agg.streaming_form is not None
  updates, weights = _cohort(seed=5, garbage=GARBAGE[garbage])
  updates = jax.tree.map(jnp.asarray, updates)
  ctx = make_context(weights, jax.random.key(7), PARAMS)  # same rng: dp_mean's noise is identical
  stacked, _ = jax.jit(agg.aggregate)(updates, agg.init(PARAMS), ctx)
  streamed, _ = jax.jit(lambda u, s, c: base.streamed_aggregate(agg.streaming_form, u, s, c))(
      updates, agg.init(PARAMS), ctx)
  for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(streamed)):
    assert a.dtype == b.dtype
    assert np.all(np.isfinite(np.asarray(a)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dp_mean_with_noise_ignores_excluded_garbage():
  clean = _aggregate('dp_mean', *_cohort(seed=6, garbage=0.0))
  agg = aggregators.dp_mean(0.9, 1.0, 9.0)
  outs = []
  for g in (0.0, np.nan):
    updates, weights = _cohort(seed=6, garbage=g)
    ctx = make_context(weights, jax.random.key(1), PARAMS)
    outs.append(jax.jit(agg.aggregate)(jax.tree.map(jnp.asarray, updates), (), ctx)[0])
  for a, b, c in zip(*(jax.tree.leaves(o) for o in outs), jax.tree.leaves(clean)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))  # the noise is really there


# ----------------------------------------------------------------------------- included non-finite rows


def _with_bad_included_row(value, row=3):
  updates, weights = _cohort(seed=8, garbage=np.nan)
  for leaf in updates.values():
    leaf[row] = value
  return updates, weights, row


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_clipping_rules_clip_a_non_finite_included_update_to_nothing(value):
  updates, weights, row = _with_bad_included_row(value)
  x, keep = _flat(updates), weights > 0
  # Centered clipping: the bad client counts in 1/n but does not move the center (its diff is 0).
  out = _aggregate('centered_clipping', updates, weights)
  v = np.zeros(x.shape[1])
  for _ in range(3):
    diff = x[keep] - v
    diff[np.flatnonzero(keep) == row] = 0.0
    norms = np.linalg.norm(diff, axis=1)
    v = v + (diff * np.minimum(1.0, 0.7 / np.maximum(norms, 1e-300))[:, None]).mean(0)
  np.testing.assert_allclose(_flat_one(out), v, rtol=2e-5, atol=2e-6)
  # Norm-bounded mean and DP: the bad client contributes the zero vector, its weight stays.
  x0 = x.copy()
  x0[row] = 0.0
  for name in ('norm_bounded_mean', 'dp_mean'):
    out = _aggregate(name, updates, weights)
    want = CASES[name][1](x0[keep], weights[keep].astype(np.float64))
    np.testing.assert_allclose(_flat_one(out), want,
                               rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_selection_rules_never_pick_a_non_finite_included_update(value):
  updates, weights, row = _with_bad_included_row(value)
  x, keep = _flat(updates), weights > 0
  good = keep.copy()
  good[row] = False
  # Geometric median: a non-finite client is infinitely far; its Weiszfeld weight is 0.
  out = _aggregate('geometric_median', updates, weights)
  np.testing.assert_allclose(_flat_one(out),
                             ref_geometric_median(x[good], weights[good].astype(np.float64)), rtol=2e-5, atol=2e-6)
  # Krum / Multi-Krum / Bulyan: finite results made of finite updates only.
  for name in ('krum', 'multi_krum', 'bulyan'):
    out = _aggregate(name, updates, weights)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(out)), name
  krum = _flat_one(_aggregate('krum', updates, weights))
  assert any(np.allclose(krum, x[i]) for i in np.flatnonzero(good))


def test_order_statistics_treat_an_included_nan_as_the_largest_value():
  updates, weights, row = _with_bad_included_row(np.nan)
  x, keep = _flat(updates), weights > 0
  as_inf = x.copy()
  as_inf[row] = np.inf
  for name in ('median', 'trimmed_mean_f'):
    out = _aggregate(name, updates, weights)
    want = CASES[name][1](as_inf[keep], weights[keep])
    np.testing.assert_allclose(_flat_one(out), want, rtol=2e-5)
  # Weighted median too: an absent +inf never ties ahead of the present one.
  agg = aggregators.median(weighted=True)
  ctx = make_context(weights, jax.random.key(0), PARAMS)
  out, _ = jax.jit(agg.aggregate)(jax.tree.map(jnp.asarray, updates), (), ctx)
  assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(out))


def test_mix_ignores_unused_columns():
  from fedjax_lab.aggregators import _robust_utils as ru
  updates, weights = _cohort(seed=9, garbage=np.nan)
  matrix = jnp.where(jnp.asarray(weights > 0)[None, :], jnp.full((C, C), 1.0 / 9.0), 0.0)
  mixed = ru.mix(jax.tree.map(jnp.asarray, updates), matrix)
  assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(mixed))


# ----------------------------------------------------------------------------- breakdown per round


@pytest.mark.parametrize('name,f,condition', [
    ('krum', 2, lambda n, f: n > 2 * f + 2),
    ('multi_krum', 2, lambda n, f: n > 2 * f + 2),
    ('bulyan', 1, lambda n, f: n >= 4 * f + 3),
    ('trimmed_mean', 2, lambda n, f: 2 * f < n),
    ('median', 2, lambda n, f: 2 * f < n),
    ('geometric_median', 2, lambda n, f: 2 * f < n),
])
def test_breakdown_is_evaluated_on_reporting_clients_inside_jit(name, f, condition):
  agg = aggregators.get_robust_aggregator(name, clients_per_round=C, f=f)
  metric = jax.jit(lambda w: base.round_metrics(agg, w)['breakdown_violated'])
  for reporting in range(C + 1):
    weights = np.zeros(C, np.float32)
    weights[:reporting] = 3.0
    assert int(metric(weights)) == int(not condition(reporting, f)), (name, reporting)


def test_rules_without_a_condition_report_nothing():
  for agg in (aggregators.mean(), aggregators.norm_bounded_mean(1.0), aggregators.centered_clipping(1.0),
              aggregators.median(), aggregators.trimmed_mean(0.2)):
    assert base.round_metrics(agg, jnp.ones(C)) == {}


def test_static_check_is_kept():
  with pytest.raises(ValueError, match=r'krum: f=3.*n > 2f \+ 2 = 8.*got n=8'):
    aggregators.krum(3, num_clients=8)
  with pytest.raises(ValueError, match=r'trimmed_mean: f=4 trims 4 of n=8'):
    aggregators.trimmed_mean(f=4, num_clients=8)


def test_fedavg_reports_rounds_below_the_breakdown_condition_with_dropout():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(160, 5)).astype(np.float32)
  y = (x @ rng.normal(size=5)).astype(np.float32)
  data = to_device(pack_clients(x, y, np.array_split(np.arange(160), 16)))
  model = models.linear_regression((5,))
  f, cohort = 1, 8  # Krum needs n > 4 reporting clients; with dropout 0.5 some rounds have fewer
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), local_epochs=1, batch_size=5,
                            max_examples=data.max_examples, aggregator=aggregators.krum(f, num_clients=cohort))
  state = algorithm.init(model.init(jax.random.key(0)))
  step = jax.jit(algorithm.step)
  seen = set()
  for r in range(12):
    key = jax.random.key(r)
    state, metrics = step(state, sample_round(data, jax.random.fold_in(key, 1), cohort, 0.5), key)
    participants = int(metrics['participants'])
    assert int(metrics['breakdown_violated']) == int(not participants > 2 * f + 2), (r, participants)
    seen.add(int(metrics['breakdown_violated']))
  assert seen == {0, 1}  # the seeds give rounds on both sides of the condition


# ----------------------------------------------------------------------------- one Byzantine count


def test_every_robust_rule_assumes_the_same_f():
  fraction, n = 0.2, 12
  f = aggregators.byzantine_count(fraction, n)
  assert f == 3
  takes_f = ['median', 'trimmed_mean', 'krum', 'multi_krum', 'geometric_median', 'bulyan']
  for name in takes_f:
    assert aggregators.byzantine_arguments(name, fraction, n) == {'f': f}, name
  for name in ('mean', 'norm_bounded_mean', 'centered_clipping'):
    assert aggregators.byzantine_arguments(name, fraction, n) == {}
  # What the runner builds from config.aggregator.byzantine_fraction: the same f everywhere.
  built = {name: aggregators.AGGREGATORS[name](clients_per_round=n, byzantine_fraction=fraction)
           for name in takes_f if name != 'bulyan'}
  for name, agg in built.items():
    violated = [int(base.round_metrics(agg, jnp.arange(n) < k)['breakdown_violated']) for k in range(n + 1)]
    first_ok = violated.index(0)
    assert first_ok == {'krum': 2 * f + 3, 'multi_krum': 2 * f + 3}.get(name, 2 * f + 1), name
  # Bulyan at f = 3 needs 15 clients: refused before compiling, naming f = 3 (not 2).
  with pytest.raises(ValueError, match=r'bulyan: f=3'):
    aggregators.AGGREGATORS['bulyan'](clients_per_round=n, byzantine_fraction=fraction)
  # The trimmed mean trims f = 3 per side (beta = f / n), not floor(0.2 * 12) = 2.
  updates, weights = _full_cohort(10)
  ctx = make_context(weights, jax.random.key(0), PARAMS)
  out, _ = jax.jit(built['trimmed_mean'].aggregate)(jax.tree.map(jnp.asarray, updates), (), ctx)
  want = ref_trimmed_mean(_flat(updates), weights, 3)
  np.testing.assert_allclose(_flat_one(out), want, rtol=2e-5)
  assert not np.allclose(want, ref_trimmed_mean(_flat(updates), weights, 2))


def _full_cohort(seed):
  rng = np.random.default_rng(seed)
  updates = {'w': rng.normal(size=(C, 3, 2)).astype(np.float32), 'b': rng.normal(size=(C, 4)).astype(np.float32)}
  return updates, np.ones(C, np.float32)


def test_byzantine_fraction_and_an_explicit_count_are_not_both_accepted():
  with pytest.raises(ValueError, match=r'byzantine_fraction=0.2 and config.aggregator.f=2'):
    aggregators.AGGREGATORS['krum'](clients_per_round=12, byzantine_fraction=0.2, f=2)
  with pytest.raises(ValueError, match=r'config.aggregator.beta=0.2'):
    aggregators.AGGREGATORS['trimmed_mean'](clients_per_round=12, byzantine_fraction=0.2, beta=0.2)
  with pytest.raises(ValueError, match='exactly one of'):
    aggregators.trimmed_mean()
