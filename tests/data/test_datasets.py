"""Built-in data sets: regression, FedProx synthetic, digits, MNIST-1D (generated once), the registry."""

import os

import numpy as np
import pytest

from fedjax_lab.data import datasets
from fedjax_lab.data import partition as P


def _check_container(data, num_clients, input_shape, num_classes):
  assert data.train.x.shape[0] == num_clients and data.train.x.shape[2:] == input_shape
  assert data.input_shape == input_shape and data.num_classes == num_classes
  assert data.train.x.dtype == np.float32 and data.test_x.dtype == np.float32
  assert data.test_x.shape[1:] == input_shape and data.test_x.shape[0] == data.test_y.shape[0]


# ---------------------------------------------------------------------------------------------
# Regression.


def test_regression_is_linear_plus_noise():
  data = datasets.regression(num_clients=4, examples_per_client=200, dim=3, noise_std=0.5, seed=0)
  _check_container(data, 4, (3,), 1)
  assert data.train.y.dtype == np.float32
  x, y = data.train.x.reshape(-1, 3).astype(np.float64), data.train.y.reshape(-1)
  residual = y - x @ data.extras['w_star']
  np.testing.assert_allclose(residual.std(), 0.5, rtol=0.1)
  np.testing.assert_allclose(residual.mean(), 0.0, atol=0.1)
  np.testing.assert_allclose(data.extras['w_opt'], np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(data.extras['w_opt'], data.extras['w_star'], atol=0.1)
  np.testing.assert_array_equal(data.train.num_examples, 200)
  assert data.test_x.shape == (4 * 50, 3)


def test_regression_heterogeneity_shifts_client_means():
  iid = datasets.regression(num_clients=5, examples_per_client=400, dim=4, seed=1)
  shifted = datasets.regression(num_clients=5, examples_per_client=400, dim=4, seed=1, heterogeneity=3.0)
  assert not iid.extras['client_means'].any()
  np.testing.assert_allclose(shifted.train.x.mean(1), shifted.extras['client_means'], atol=0.2)
  spread = lambda d: d.train.x.mean(1).std(0).mean()
  assert spread(shifted) > 10 * spread(iid)


def test_regression_is_deterministic():
  a, b = datasets.regression(seed=3), datasets.regression(seed=3)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  assert not np.array_equal(a.train.x, datasets.regression(seed=4).train.x)


# ---------------------------------------------------------------------------------------------
# FedProx synthetic.


def _user_counts(data):
  train = np.asarray(data.train.num_examples)
  test = np.bincount(data.extras['test_client'], minlength=len(train))
  return train, test


def test_fedprox_synthetic_sizes_labels_and_split():
  data = datasets.fedprox_synthetic(alpha=1.0, beta=1.0, seed=0)  # uncapped: largest user 1640
  _check_container(data, 30, (60,), 10)
  samples = data.extras['samples_per_user']
  assert samples.min() >= 50
  train, test = _user_counts(data)
  np.testing.assert_array_equal(train, (0.8 * samples).astype(int))
  np.testing.assert_array_equal(train + test, samples)
  y = data.train.y[data.train.mask()]
  assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 10 and data.test_y.max() < 10
  assert len(np.unique(data.test_y)) > 1


def _linearly_separable(x, y, num_classes):
  """LP feasibility: is there (W, b) with (w_y - w_j) . [x, 1] >= 1 for every example and j != y?"""
  from scipy.optimize import linprog
  features = np.hstack([x, np.ones((len(x), 1))])
  d = features.shape[1]
  rows = []
  for f, label in zip(features, y):
    for j in range(num_classes):
      if j != label:
        row = np.zeros((num_classes, d))
        row[label], row[j] = -f, f  # -(w_y - w_j) . f <= -1
        rows.append(row.ravel())
  result = linprog(np.zeros(num_classes * d), A_ub=np.array(rows), b_ub=-np.ones(len(rows)),
                   bounds=(None, None), method='highs')
  return result.status == 0


def test_fedprox_synthetic_labels_are_a_linear_classification():
  # Each user's labels are argmax(x W_k + b_k), so each user's data are linearly separable; two
  # users' data together are not (their models differ).
  data = datasets.fedprox_synthetic(alpha=0.5, beta=0.5, seed=1, dim=5, num_classes=3, max_samples_per_user=300)
  order = np.argsort(-data.train.num_examples)
  user = lambda k: (data.train.x[k, :data.train.num_examples[k]], data.train.y[k, :data.train.num_examples[k]])
  (xa, ya), (xb, yb) = user(order[0]), user(order[1])
  assert _linearly_separable(xa, ya, 3) and _linearly_separable(xb, yb, 3)
  assert not _linearly_separable(np.concatenate([xa, xb]), np.concatenate([ya, yb]), 3)


def test_fedprox_synthetic_beta_spreads_user_inputs():
  spread = lambda beta: datasets.fedprox_synthetic(0.0, beta, seed=2, max_samples_per_user=100).train.x[:, :40].mean(
      (1, 2)).std()
  # Per-user input mean over 60 dimensions: std ~ sqrt(1/60) ~ 0.13 with beta = 0, ~ beta otherwise.
  assert spread(0.0) < 0.3
  assert spread(3.0) > 1.5


def test_fedprox_synthetic_noniid_labels_differ_more_across_users_than_iid():
  def mean_tv(data):
    hist = np.stack([np.bincount(data.train.y[k, :n], minlength=10) for k, n in enumerate(data.train.num_examples)])
    local = hist / hist.sum(1, keepdims=True)
    overall = hist.sum(0) / hist.sum()
    return 0.5 * np.abs(local - overall).sum(1).mean()
  noniid = mean_tv(datasets.fedprox_synthetic(1.0, 1.0, seed=0, max_samples_per_user=400))
  iid = mean_tv(datasets.fedprox_synthetic(0.0, 0.0, seed=0, iid=True, max_samples_per_user=400))
  assert noniid > 0.4 and iid < 0.2


def test_fedprox_synthetic_alpha_only_shifts_all_logits_equally():
  # A property of the reference generator, kept on purpose: W_k ~ N(u_k, 1) and b_k ~ N(u_k, 1) add
  # u_k (sum(x) + 1) to every class's logit, so the argmax (the label) does not depend on alpha for
  # the same draws. Only the per-user noise in W_k, b_k and beta's input shift make users differ.
  a = datasets.fedprox_synthetic(alpha=0.0, beta=0.5, seed=3, max_samples_per_user=200)
  b = datasets.fedprox_synthetic(alpha=2.0, beta=0.5, seed=3, max_samples_per_user=200)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  agree = np.mean(a.train.y[a.train.mask()] == b.train.y[b.train.mask()])
  assert agree > 0.999  # float rounding may flip a near tie


def test_fedprox_synthetic_cap_and_alias_and_validation():
  data = datasets.fedprox_synthetic(num_clients=7, seed=0, max_samples_per_user=60)
  assert data.train.num_clients == 7 and data.extras['samples_per_user'].max() <= 60
  with pytest.raises(ValueError, match='config.data.alpha'):
    datasets.fedprox_synthetic(alpha=-1.0)
  with pytest.raises(ValueError, match='config.data.partition'):
    datasets.fedprox_synthetic(partition='dirichlet')


# ---------------------------------------------------------------------------------------------
# Digits.


def test_digits_stratified_split_and_scaling():
  data = datasets.load_dataset('digits', num_clients=8, partition='iid', seed=0)
  _check_container(data, 8, (8, 8), 10)
  assert int(data.train.num_examples.sum()) + len(data.test_y) == 1797
  assert len(data.test_y) == 359
  x = data.train.x[data.train.mask()]
  assert x.min() == 0.0 and x.max() == 1.0
  # Stratified: each class has round(0.2 * its size) test examples.
  from sklearn.datasets import load_digits
  class_sizes = np.bincount(load_digits().target)
  np.testing.assert_array_equal(np.bincount(data.test_y, minlength=10), np.round(0.2 * class_sizes))


def test_digits_split_is_fixed_partition_follows_seed():
  a = datasets.digits(num_clients=4, seed=0)
  b = datasets.digits(num_clients=4, seed=1)
  np.testing.assert_array_equal(a.test_x, b.test_x)
  assert not np.array_equal(a.train.y, b.train.y)
  np.testing.assert_array_equal(a.train.x, datasets.digits(num_clients=4, seed=0).train.x)


def test_digits_passes_partition_arguments():
  data = datasets.load_dataset('digits', num_clients=10, partition='classes_per_client', k=2, seed=0)
  classes = [np.unique(data.train.y[k, :n]) for k, n in enumerate(data.train.num_examples)]
  assert all(len(c) == 2 for c in classes)


# ---------------------------------------------------------------------------------------------
# MNIST-1D: generated once for the whole module.


class _Counter:
  generations = 0


@pytest.fixture(scope='module')
def mnist1d_cache(tmp_path_factory):
  """Generates MNIST-1D once into a temporary cache, counting generations; forbids get_dataset."""
  import mnist1d.data

  patch = pytest.MonkeyPatch()
  original = datasets._generate_mnist1d

  def counting():
    _Counter.generations += 1
    return original()

  def forbidden(*args, **kwargs):
    raise AssertionError('mnist1d.data.get_dataset downloads; it must never be called')

  patch.setattr(datasets, '_generate_mnist1d', counting)
  patch.setattr(mnist1d.data, 'get_dataset', forbidden)
  cache = str(tmp_path_factory.mktemp('mnist1d_cache'))
  np.random.seed(7)
  expected_next = np.random.random()
  np.random.seed(7)
  first = datasets.mnist1d_arrays(cache)
  global_rng_untouched = np.random.random() == expected_next
  yield cache, first, global_rng_untouched
  patch.undo()


def test_mnist1d_generated_shapes(mnist1d_cache):
  _, first, _ = mnist1d_cache
  assert first['x'].shape == (4000, 40) and first['x_test'].shape == (1000, 40)
  assert first['x'].dtype == np.float32 and first['y'].dtype == np.int32
  np.testing.assert_array_equal(np.bincount(np.concatenate([first['y'], first['y_test']])), 500)


def test_mnist1d_second_load_reads_the_cache(mnist1d_cache):
  cache, first, _ = mnist1d_cache
  assert os.path.isfile(os.path.join(cache, datasets.MNIST1D_FILE))
  again = datasets.mnist1d_arrays(cache)
  assert _Counter.generations == 1
  for key in first:
    np.testing.assert_array_equal(again[key], first[key])


def test_mnist1d_leaves_numpy_global_rng_alone(mnist1d_cache):
  assert mnist1d_cache[2]


def test_mnist1d_dataset_partitions_and_config_arguments(mnist1d_cache):
  cache, first, _ = mnist1d_cache
  # The runner's config keeps alpha even when the partition is iid: it is ignored.
  data = datasets.load_dataset('mnist1d', num_clients=20, partition='iid', alpha=0.5, seed=0, cache_dir=cache)
  _check_container(data, 20, (40,), 10)
  assert int(data.train.num_examples.sum()) == 4000
  np.testing.assert_array_equal(data.test_y, first['y_test'])
  skewed = datasets.load_dataset('mnist1d', num_clients=20, partition='dirichlet', alpha=0.1, seed=0,
                                 cache_dir=cache)
  hist = np.stack([np.bincount(skewed.train.y[k, :n], minlength=10) for k, n in enumerate(skewed.train.num_examples)])
  assert (hist.max(1) / hist.sum(1)).mean() > 0.5  # the largest class dominates a typical client
  assert _Counter.generations == 1


def test_cache_dir_default_follows_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('FEDJAX_LAB_CACHE', str(tmp_path))
  assert datasets.cache_dir_default() == str(tmp_path)
  monkeypatch.delenv('FEDJAX_LAB_CACHE')
  assert datasets.cache_dir_default().endswith(os.path.join('.cache', 'fedjax_lab'))


# ---------------------------------------------------------------------------------------------
# Registry.


def test_registry_lists_every_loader():
  assert set(datasets.DATASETS) == {'regression', 'fedprox_synthetic', 'digits', 'mnist1d', 'mnist_idx',
                                    'emnist_idx', 'cifar10', 'femnist', 'femnist_synthetic', 'federated_npy'}


@pytest.mark.parametrize('name,kwargs,field', [
    ('mnist2d', {}, 'config.data.name'),
    ('regression', {'partition': 'iid'}, 'config.data.partition'),
    ('regression', {'nosie_std': 0.1}, 'config.data.nosie_std'),
    ('regression', {'noise_std': -1.0}, 'config.data.noise_std'),
    ('digits', {'partition': 'dirichlet', 'alpha': 0.0}, 'config.data.alpha'),
    ('digits', {'partition': 'shards', 'shard_per_client': 2}, 'config.data.shard_per_client'),
    ('digits', {'partition': 'nope'}, 'config.data.partition'),
    ('digits', {'num_clients': 5000}, 'config.data.num_clients'),
])
def test_load_dataset_errors_name_the_field(name, kwargs, field):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    datasets.load_dataset(name, **kwargs)


def test_partition_histogram_on_a_real_data_set():
  data = datasets.digits(num_clients=5, partition='shards', shards_per_client=2, seed=0)
  # Re-derive the split from the same inputs and compare counts with the packed labels.
  hist_packed = np.stack([np.bincount(data.train.y[k, :n], minlength=10) for k, n in enumerate(data.train.num_examples)])
  assert (hist_packed > 0).sum(1).max() <= 4  # 2 shards, each straddling at most one boundary
  assert hist_packed.sum() == 1438
  assert P.label_histogram(data.train.y.reshape(-1), [np.arange(data.train.y.size)], 10).sum() == data.train.y.size
