"""The FEMNIST-sized synthetic stand-in: shapes, sizes, determinism per seed, written as memmaps."""

import os

import numpy as np
import pytest

from fedjax_lab.data import datasets, femnist_synthetic, host


def _load(tmp_path, **kwargs):
  kwargs = {'num_clients': 40, 'mean_examples': 24, 'test_examples': 50, 'cache_dir': str(tmp_path), **kwargs}
  return datasets.load_dataset('femnist_synthetic', **kwargs)


def test_shapes_sizes_and_ranges(tmp_path):
  data = _load(tmp_path)
  assert isinstance(data.train.x, np.memmap)
  assert data.train.x.shape == (40, 48, 28, 28) and data.train.x.dtype == np.float32
  assert data.train.y.shape == (40, 48) and data.train.y.dtype == np.int32
  assert data.test_x.shape == (50, 28, 28) and data.test_y.shape == (50,)
  assert (data.input_shape, data.num_classes, data.name) == ((28, 28), 62, 'femnist_synthetic')
  sizes = np.asarray(data.train.num_examples)
  assert sizes.min() >= 3 and sizes.max() <= 48 and len(np.unique(sizes)) > 10  # unbalanced
  assert 18 <= sizes.mean() <= 30
  x = np.asarray(data.train.x)
  assert 0.0 <= x.min() and x.max() <= 1.0
  mask = np.asarray(data.train.mask())
  assert not x[~mask].any() and not np.asarray(data.train.y)[~mask].any()  # zero padding
  assert 0 <= data.test_y.min() and data.test_y.max() < 62


def test_full_size_defaults_are_femnist_like():
  sizes = femnist_synthetic.client_sizes(3400, 220, seed=0)
  assert sizes.shape == (3400,)
  assert 200 <= sizes.mean() <= 240 and sizes.max() <= 440 and sizes.min() >= 27
  assert 0.3 <= sizes.std() / sizes.mean() <= 0.5


def test_deterministic_per_seed_and_independent_of_chunking(tmp_path):
  a = _load(tmp_path / 'a', seed=3, chunk_clients=7)
  b = _load(tmp_path / 'b', seed=3, chunk_clients=64)
  c = _load(tmp_path / 'c', seed=4)
  for left, right in zip(a.train, b.train):
    np.testing.assert_array_equal(left, right)
  np.testing.assert_array_equal(a.test_x, b.test_x)
  assert not np.array_equal(np.asarray(a.train.x), np.asarray(c.train.x))


def test_writers_differ_and_classes_are_learnable_signal(tmp_path):
  data = _load(tmp_path, num_clients=6, mean_examples=100)
  protos = femnist_synthetic.class_prototypes(0)
  # An example correlates best with its own class prototype far more often than chance (1/62).
  x = np.asarray(data.train.x[0, :data.train.num_examples[0]]).reshape(-1, 784)
  y = np.asarray(data.train.y[0, :data.train.num_examples[0]])
  centred = protos.reshape(62, -1) - protos.reshape(62, -1).mean(1, keepdims=True)
  nearest = np.argmax((x - x.mean(1, keepdims=True)) @ centred.T, axis=1)
  assert np.mean(nearest == y) > 0.2
  # Writers' label distributions differ (Dirichlet around the class frequencies).
  hist = [np.bincount(data.train.y[k, :data.train.num_examples[k]], minlength=62) for k in range(6)]
  assert not np.array_equal(hist[0], hist[1])


def test_cached_folder_is_reused_and_complete(tmp_path):
  _load(tmp_path)
  folder = femnist_synthetic.cache_folder(str(tmp_path), 40, 24, 0, 50)
  assert os.path.isfile(os.path.join(folder, host.DATASET_JSON))
  assert not [name for name in os.listdir(os.path.dirname(folder)) if name.startswith('.tmp')]
  before = os.path.getmtime(os.path.join(folder, 'train', 'x.npy'))
  _load(tmp_path)
  assert os.path.getmtime(os.path.join(folder, 'train', 'x.npy')) == before


@pytest.mark.parametrize('override, message', [
    ({'num_clients': 0}, 'config.data.num_clients'),
    ({'mean_examples': 2.5}, 'config.data.mean_examples'),
    ({'partition': 'iid'}, 'config.data.partition'),
])
def test_bad_arguments_name_the_field(tmp_path, override, message):
  with pytest.raises(ValueError, match=message):
    _load(tmp_path, **override)
