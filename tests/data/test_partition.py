"""Partitioners: coverage, determinism, the skew each one promises, and validation messages."""

import numpy as np
import pytest

from fedjax_lab.data import partition as P

NUM_CLASSES = 10


def _labels(n=600, seed=0):
  return np.random.default_rng(seed).integers(0, NUM_CLASSES, n)


def _client_ids(n=600, seed=1):
  return np.random.default_rng(seed).choice(np.array(['w07', 'w01', 'w13', 'w02', 'w99']), n)


# (name, kwargs) covering every registered partitioner.
CASES = [
    ('iid', {}),
    ('dirichlet', {'alpha': 0.3}),
    ('dirichlet', {'alpha': 0.1, 'min_size': 5}),
    ('shards', {'shards_per_client': 3}),
    ('classes_per_client', {'k': 2}),
    ('quantity_skew', {'distribution': 'lognormal', 'sigma': 1.5}),
    ('quantity_skew', {'distribution': 'powerlaw', 'exponent': 1.0, 'min_size': 3}),
]


def _run(name, kwargs, seed=0, num_clients=12, labels=None):
  labels = _labels() if labels is None else labels
  return P.partition(name, labels, num_clients, seed, **kwargs)


def test_registry_is_covered():
  assert {name for name, _ in CASES} | {'natural'} == set(P.PARTITIONERS)


@pytest.mark.parametrize('name,kwargs', CASES)
def test_every_example_exactly_once(name, kwargs):
  parts = _run(name, kwargs)
  assert len(parts) == 12
  assert all(p.dtype == np.int64 and p.ndim == 1 and len(p) > 0 for p in parts)
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(600))


def test_natural_every_example_exactly_once_and_grouped():
  ids = _client_ids()
  parts = P.partition('natural', _labels(), None, 0, client_ids=ids)
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(600))
  for part, writer in zip(parts, sorted(set(ids))):
    np.testing.assert_array_equal(part, np.flatnonzero(ids == writer))  # sorted ids, file order kept


@pytest.mark.parametrize('name,kwargs', CASES)
def test_deterministic_in_seed(name, kwargs):
  first, again, other = _run(name, kwargs, seed=3), _run(name, kwargs, seed=3), _run(name, kwargs, seed=4)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert any(len(a) != len(b) or np.any(a != b) for a, b in zip(first, other))


def test_partitioners_leave_global_rng_alone():
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  for name, kwargs in CASES:
    _run(name, kwargs)
  assert np.random.random() == expected


def test_iid_sizes_differ_by_at_most_one():
  sizes = [len(p) for p in P.iid(103, 10, seed=0)]
  assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 103


def _mean_total_variation(labels, parts):
  """Mean over clients of the total-variation distance between client and global label mix."""
  hist = P.label_histogram(labels, parts, NUM_CLASSES).astype(float)
  local = hist / hist.sum(1, keepdims=True)
  overall = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
  return 0.5 * np.abs(local - overall).sum(1).mean()


def test_dirichlet_small_alpha_is_skewed_large_alpha_is_not():
  labels = _labels(4000)
  skewed = _mean_total_variation(labels, P.dirichlet(labels, 10, alpha=0.1, seed=0))
  nearly_iid = _mean_total_variation(labels, P.dirichlet(labels, 10, alpha=100.0, seed=0))
  iid = _mean_total_variation(labels, P.iid(4000, 10, seed=0))
  assert skewed > 0.5
  assert nearly_iid < 0.1 and iid < 0.1
  assert skewed > 5 * nearly_iid


def test_dirichlet_shares_have_dirichlet_moments():
  # Without resampling (min_size=0), client k's share of class c is a Dir(alpha 1_K) marginal:
  # Beta(alpha, (K-1) alpha), mean 1/K, variance (1/K)(1-1/K)/(K alpha + 1).
  num_clients, alpha, per_class, classes = 5, 0.5, 400, 40
  labels = np.repeat(np.arange(classes), per_class)
  shares = []
  for seed in range(5):
    parts = P.dirichlet(labels, num_clients, alpha, seed, min_size=0)
    shares.append(P.label_histogram(labels, parts, classes).T / per_class)  # [classes, K]
  shares = np.concatenate(shares).ravel()
  k = num_clients
  np.testing.assert_allclose(shares.mean(), 1 / k, atol=1e-3)
  np.testing.assert_allclose(shares.var(), (1 / k) * (1 - 1 / k) / (k * alpha + 1), rtol=0.15)


def test_dirichlet_min_size_is_respected():
  labels = _labels(1000)
  parts = P.dirichlet(labels, 10, alpha=0.2, seed=0, min_size=20)
  assert min(len(p) for p in parts) >= 20


def test_dirichlet_unreachable_min_size_says_what_to_change():
  labels = _labels(100)
  with pytest.raises(ValueError, match='config.data.min_size'):
    P.dirichlet(labels, 10, alpha=0.01, seed=0, min_size=9, max_tries=3)


@pytest.mark.parametrize('k', [1, 2, 3, 10])
def test_classes_per_client_gives_exactly_k_classes(k):
  labels = _labels(600)
  parts = P.classes_per_client(labels, 12, k, seed=0)
  hist = P.label_histogram(labels, parts, NUM_CLASSES)
  np.testing.assert_array_equal((hist > 0).sum(1), k)
  holders = (hist > 0).sum(0)
  assert holders.max() - holders.min() <= 1  # classes spread evenly over clients
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(600))


def test_shards_give_at_most_shards_per_client_classes_when_aligned():
  # 10 classes x 40 examples, 20 clients x 2 shards of 10: shards never straddle a class boundary.
  labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 40))
  parts = P.shards(labels, 20, 2, seed=0)
  hist = P.label_histogram(labels, parts, 10)
  assert (hist > 0).sum(1).max() <= 2
  assert all(len(p) == 20 for p in parts)
  # Each shard is one class, so every client's counts are multiples of the shard size.
  assert np.all(hist % 10 == 0)


def test_shards_are_label_sorted_slices():
  labels = _labels(600)
  parts = P.shards(labels, 12, 1, seed=0)
  # With one shard per client, each client holds one contiguous run of the label-sorted order.
  runs = sorted((labels[p].min(), labels[p].max(), len(p)) for p in parts)
  for (_, hi, _), (lo, _, _) in zip(runs, runs[1:]):
    assert hi <= lo


@pytest.mark.parametrize('distribution,kwargs', [('lognormal', {'sigma': 1.5}), ('powerlaw', {'exponent': 1.0})])
def test_quantity_skew_sizes_are_unequal_with_minimum(distribution, kwargs):
  parts = P.quantity_skew(2000, 20, seed=0, distribution=distribution, min_size=15, **kwargs)
  sizes = np.array([len(p) for p in parts])
  assert sizes.sum() == 2000 and sizes.min() >= 15
  assert sizes.max() >= 4 * sizes.min()
  assert sizes.std() / sizes.mean() > 0.5  # coefficient of variation; an iid split has ~0


def test_quantity_skew_follows_the_drawn_weights():
  # Plain-numpy reference: the same generator stream gives the weights, sizes follow them.
  parts = P.quantity_skew(10_000, 8, seed=5, sigma=1.0, min_size=0)
  weights = np.random.default_rng(5).lognormal(0.0, 1.0, 8)
  np.testing.assert_allclose([len(p) for p in parts], 10_000 * weights / weights.sum(), atol=1.0)


def test_partition_ignores_other_partitioners_arguments():
  labels = _labels()
  with_alpha = P.partition('iid', labels, 6, 0, alpha=0.5, k=3)
  for a, b in zip(with_alpha, P.iid(600, 6, 0)):
    np.testing.assert_array_equal(a, b)


def test_label_histogram_matches_a_loop():
  labels = _labels(200)
  parts = P.dirichlet(labels, 7, 0.5, seed=0)
  hist = P.label_histogram(labels, parts, NUM_CLASSES)
  assert hist.shape == (7, NUM_CLASSES)
  for k, p in enumerate(parts):
    for c in range(NUM_CLASSES):
      assert hist[k, c] == np.sum(labels[p] == c)


@pytest.mark.parametrize('call,field', [
    (lambda: P.partition('dirichlet', _labels(), 5, 0, alpha=0.0), 'config.data.alpha'),
    (lambda: P.partition('dirichlet', _labels(), 5, 0, alpha=-1.0), 'config.data.alpha'),
    (lambda: P.partition('classes_per_client', _labels(), 5, 0, k=11), 'config.data.k'),
    (lambda: P.partition('classes_per_client', _labels(), 3, 0, k=2), 'config.data.num_clients'),
    (lambda: P.partition('iid', _labels(20), 21, 0), 'config.data.num_clients'),
    (lambda: P.partition('dirichlet', _labels(20), 21, 0), 'config.data.num_clients'),
    (lambda: P.partition('shards', _labels(20), 5, 0, shards_per_client=5), 'config.data.shards_per_client'),
    (lambda: P.partition('quantity_skew', _labels(20), 5, 0, min_size=5), 'config.data.min_size'),
    (lambda: P.partition('quantity_skew', _labels(20), 5, 0, distribution='zipf'), 'config.data.distribution'),
    (lambda: P.partition('quantity_skew', _labels(20), 5, 0, sigma=0.0), 'config.data.sigma'),
    (lambda: P.partition('dirichlett', _labels(), 5, 0), 'config.data.partition'),
    (lambda: P.partition('dirichlet', _labels(), 5, 0, alhpa=0.1), 'config.data.alhpa'),
    (lambda: P.partition('natural', _labels(), 5, 0), 'client_ids'),
    (lambda: P.partition('natural', _labels(), 4, 0, client_ids=_client_ids()), 'config.data.num_clients'),
    (lambda: P.partition('dirichlet', _labels().astype(float), 5, 0), 'config.data.partition'),
])
def test_validation_names_the_config_field(call, field):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    call()


def test_validation_happens_before_work(monkeypatch):
  # An impossible config fails before any random generator is made.
  def fail(*args, **kwargs):
    raise AssertionError('made a generator before validating')
  labels = _labels()
  monkeypatch.setattr(np.random, 'default_rng', fail)
  with pytest.raises(ValueError, match='config.data.alpha'):
    P.dirichlet(labels, 5, alpha=0.0, seed=0)
