"""File readers on tiny files written here: IDX (raw and gzip), CIFAR-10 binary, federated EMNIST HDF5."""

import gzip
import os

import h5py
import numpy as np
import pytest

from fedjax_lab.data import datasets, loaders


def _idx_bytes(array: np.ndarray) -> bytes:
  """Plain-numpy IDX writer: magic (0, 0, 0x08 uint8, ndim), big-endian sizes, data."""
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, '>i4').tobytes()
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _write_idx(path, array, gz=False):
  data = _idx_bytes(array)
  if gz:
    with gzip.open(path + '.gz', 'wb') as f:
      f.write(data)
  else:
    with open(path, 'wb') as f:
      f.write(data)


def _images(n, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _write_mnist(folder, n_train=6, n_test=4):
  images = {'train': _images(n_train, 0), 't10k': _images(n_test, 1)}
  labels = {'train': np.arange(n_train, dtype=np.uint8) % 10, 't10k': np.arange(n_test, dtype=np.uint8)[::-1] % 10}
  for part in ('train', 't10k'):
    _write_idx(os.path.join(folder, f'{part}-images-idx3-ubyte'), images[part], gz=(part == 'train'))
    _write_idx(os.path.join(folder, f'{part}-labels-idx1-ubyte'), labels[part], gz=False)
  return images, labels


@pytest.mark.parametrize('gz', [False, True])
def test_read_idx_raw_and_gzip(tmp_path, gz):
  images = _images(3, 0)
  _write_idx(str(tmp_path / 'a'), images, gz=gz)
  got = loaders.read_idx(str(tmp_path / ('a.gz' if gz else 'a')), expected_ndim=3)
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, images)


def test_read_idx_big_endian_int32(tmp_path):
  values = np.array([[1, -2, 70000], [3, 4, 5]], np.int32)
  header = bytes([0, 0, 0x0C, 2]) + np.asarray(values.shape, '>i4').tobytes()
  (tmp_path / 'v').write_bytes(header + values.astype('>i4').tobytes())
  np.testing.assert_array_equal(loaders.read_idx(str(tmp_path / 'v')), values)


def test_read_idx_checks_magic_dimensions_and_length(tmp_path):
  (tmp_path / 'bad').write_bytes(b'\x01\x02\x08\x01' + b'\x00' * 8)
  with pytest.raises(ValueError, match='magic number'):
    loaders.read_idx(str(tmp_path / 'bad'))
  _write_idx(str(tmp_path / 'labels'), np.arange(5, dtype=np.uint8))
  with pytest.raises(ValueError, match='announces 1 dimensions, expected 3'):
    loaders.read_idx(str(tmp_path / 'labels'), expected_ndim=3)
  (tmp_path / 'short').write_bytes(_idx_bytes(_images(2, 0))[:-5])
  with pytest.raises(ValueError, match='truncated'):
    loaders.read_idx(str(tmp_path / 'short'))


def test_load_mnist_mixes_raw_and_gzip(tmp_path):
  images, labels = _write_mnist(str(tmp_path))
  split = loaders.load_mnist(str(tmp_path))
  np.testing.assert_array_equal(split.x_train, images['train'])
  np.testing.assert_array_equal(split.y_train, labels['train'])
  np.testing.assert_array_equal(split.x_test, images['t10k'])
  np.testing.assert_array_equal(split.y_test, labels['t10k'])
  assert split.y_train.dtype == np.int32


def test_missing_mnist_file_names_exact_path(tmp_path):
  _write_mnist(str(tmp_path))
  os.remove(tmp_path / 't10k-labels-idx1-ubyte')
  expected = os.path.join(str(tmp_path), 't10k-labels-idx1-ubyte')
  with pytest.raises(FileNotFoundError, match='ossci-datasets') as error:
    loaders.load_mnist(str(tmp_path))
  assert expected in str(error.value)


def test_mnist_idx_dataset_scales_and_partitions(tmp_path):
  images, _ = _write_mnist(str(tmp_path), n_train=12)
  data = datasets.load_dataset('mnist_idx', data_dir=str(tmp_path), num_clients=3, partition='iid', seed=0)
  assert data.train.x.shape == (3, 4, 28, 28) and data.train.x.dtype == np.float32
  assert data.input_shape == (28, 28) and data.num_classes == 10
  np.testing.assert_allclose(np.sort(data.train.x.reshape(-1)), np.sort(images['train'].reshape(-1) / 255.0),
                             rtol=1e-6)


@pytest.mark.parametrize('split,offset', [('digits', 0), ('letters', 1)])
def test_load_emnist_transposes_images_and_shifts_letters(tmp_path, split, offset):
  stored = _images(4, 2)
  labels = np.array([1, 2, 3, 4], np.uint8)
  for part in ('train', 'test'):
    _write_idx(str(tmp_path / f'emnist-{split}-{part}-images-idx3-ubyte'), stored, gz=True)
    _write_idx(str(tmp_path / f'emnist-{split}-{part}-labels-idx1-ubyte'), labels, gz=True)
  result = loaders.load_emnist(str(tmp_path), split)
  np.testing.assert_array_equal(result.x_train, stored.transpose(0, 2, 1))
  np.testing.assert_array_equal(result.y_test, labels.astype(np.int32) - offset)
  data = datasets.load_dataset('emnist_idx', data_dir=str(tmp_path), split=split, num_clients=2, seed=0)
  assert data.num_classes == loaders.EMNIST_NUM_CLASSES[split]


def test_emnist_unknown_split(tmp_path):
  with pytest.raises(ValueError, match='config.data.split'):
    loaders.load_emnist(str(tmp_path), 'digitz')


def _cifar_records(n, seed):
  """Plain-numpy reference layout: label byte, then R, G, B planes of 32x32 row-major."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.uint8)
  rows = [np.concatenate([[labels[i]], images[i, :, :, 0].ravel(), images[i, :, :, 1].ravel(),
                          images[i, :, :, 2].ravel()]) for i in range(n)]
  return images, labels, np.stack(rows).astype(np.uint8).tobytes()


def _write_cifar(folder):
  os.makedirs(folder, exist_ok=True)
  parts = []
  for i, name in enumerate([f'data_batch_{b}.bin' for b in range(1, 6)] + ['test_batch.bin']):
    images, labels, raw = _cifar_records(2 if i < 5 else 3, seed=i)
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(raw)
    parts.append((images, labels))
  return parts


@pytest.mark.parametrize('nested', [False, True])
def test_load_cifar10_binary(tmp_path, nested):
  folder = str(tmp_path / 'cifar-10-batches-bin') if nested else str(tmp_path)
  parts = _write_cifar(folder)
  split = loaders.load_cifar10(str(tmp_path))
  np.testing.assert_array_equal(split.x_train, np.concatenate([p[0] for p in parts[:5]]))
  np.testing.assert_array_equal(split.y_train, np.concatenate([p[1] for p in parts[:5]]))
  np.testing.assert_array_equal(split.x_test, parts[5][0])
  assert split.x_train.shape == (10, 32, 32, 3) and split.y_test.dtype == np.int32
  data = datasets.load_dataset('cifar10', data_dir=str(tmp_path), num_clients=5, partition='iid', seed=0)
  assert data.train.x.shape == (5, 2, 32, 32, 3) and data.input_shape == (32, 32, 3)
  assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0


def test_cifar10_rejects_wrong_record_size_and_missing_batch(tmp_path):
  _write_cifar(str(tmp_path))
  with open(tmp_path / 'data_batch_3.bin', 'ab') as f:
    f.write(b'\x00')
  with pytest.raises(ValueError, match='3073-byte'):
    loaders.load_cifar10(str(tmp_path))
  os.remove(tmp_path / 'data_batch_3.bin')
  with pytest.raises(FileNotFoundError, match='cifar-10-binary') as error:
    loaders.load_cifar10(str(tmp_path))
  assert os.path.join(str(tmp_path), 'data_batch_3.bin') in str(error.value)


WRITERS = {'f0003_12': 3, 'f0001_40': 5, 'f0002_07': 2}


def _write_fed_emnist(folder, split, writers=WRITERS, seed=0):
  rng = np.random.default_rng(seed)
  content = {}
  with h5py.File(os.path.join(folder, f'fed_emnist_{split}.h5'), 'w') as f:
    for cid, n in writers.items():
      pixels = rng.random((n, 28, 28)).astype(np.float32)
      label = rng.integers(0, 62, n).astype(np.int32)
      f.create_dataset(f'examples/{cid}/pixels', data=pixels)
      f.create_dataset(f'examples/{cid}/label', data=label)
      content[cid] = (pixels, label)
  return content


def test_read_fed_emnist_h5_groups_by_writer(tmp_path):
  content = _write_fed_emnist(str(tmp_path), 'train')
  split = loaders.read_fed_emnist_h5(str(tmp_path / 'fed_emnist_train.h5'))
  assert split.client_ids == sorted(WRITERS)
  for i, cid in enumerate(split.client_ids):
    np.testing.assert_array_equal(split.x[split.client == i], content[cid][0])
    np.testing.assert_array_equal(split.y[split.client == i], content[cid][1])


def test_femnist_dataset_natural_partition(tmp_path):
  train = _write_fed_emnist(str(tmp_path), 'train')
  test = _write_fed_emnist(str(tmp_path), 'test', {'f0001_40': 1, 'f0002_07': 2, 'f0009_99': 4}, seed=1)
  data = datasets.load_dataset('femnist', data_dir=str(tmp_path), seed=0)
  assert data.extras['client_ids'] == sorted(WRITERS) and data.num_classes == 62
  np.testing.assert_array_equal(data.train.num_examples, [WRITERS[c] for c in sorted(WRITERS)])
  for k, cid in enumerate(sorted(WRITERS)):
    n = WRITERS[cid]
    np.testing.assert_allclose(data.train.x[k, :n], 1.0 - train[cid][0])  # inverted as FedJAX does
    np.testing.assert_array_equal(data.train.y[k, :n], train[cid][1])
  assert data.test_x.shape == (3, 28, 28)  # the test-only writer f0009_99 is not a client
  np.testing.assert_array_equal(data.test_y, np.concatenate([test['f0001_40'][1], test['f0002_07'][1]]))
  np.testing.assert_array_equal(data.extras['test_client'], [0, 1, 1])

  subset = datasets.load_dataset('femnist', data_dir=str(tmp_path), num_clients=2, seed=0)
  assert subset.train.num_clients == 2 and set(subset.extras['client_ids']) <= set(WRITERS)
  with pytest.raises(ValueError, match='config.data.num_clients'):
    datasets.load_dataset('femnist', data_dir=str(tmp_path), num_clients=4)
  with pytest.raises(ValueError, match='config.data.partition'):
    datasets.load_dataset('femnist', data_dir=str(tmp_path), partition='iid')


def test_femnist_missing_file_says_where(tmp_path):
  _write_fed_emnist(str(tmp_path), 'train')
  with pytest.raises(FileNotFoundError, match='fed_emnist.tar.bz2') as error:
    datasets.load_dataset('femnist', data_dir=str(tmp_path))
  assert os.path.join(str(tmp_path), 'fed_emnist_test.h5') in str(error.value)


@pytest.mark.parametrize('name', ['mnist_idx', 'emnist_idx', 'cifar10', 'femnist'])
def test_file_datasets_require_data_dir(name):
  with pytest.raises(ValueError, match='config.data.data_dir'):
    datasets.load_dataset(name)
