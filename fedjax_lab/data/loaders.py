"""Readers for standard data files already on disk; nothing here downloads.

  MNIST / EMNIST   IDX files (`train-images-idx3-ubyte`, ... , raw or `.gz`), magic numbers checked.
  CIFAR-10         the *binary* batches (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`):
                   3073-byte records, one label byte then 3072 pixel bytes (R, G, B planes of 32x32).
                   The "python version" of CIFAR-10 is a set of pickles; unpickling a downloaded file
                   can run arbitrary code, so it is not supported.
  Federated EMNIST the TFF / FedJAX HDF5 layout (`fed_emnist_train.h5`, `fed_emnist_test.h5`): group
                   `examples/<client_id>/` with datasets `pixels` [n, 28, 28] and `label` [n]; the
                   writer of each example gives a natural partition.

A missing file raises FileNotFoundError naming the exact path expected and where to get the file.
Images come back as stored (uint8 for IDX and CIFAR, float32 for the HDF5 files); `datasets.py`
scales them.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

# IDX element types: the third magic byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: np.dtype('>u1'), 0x09: np.dtype('>i1'), 0x0B: np.dtype('>i2'), 0x0C: np.dtype('>i4'),
               0x0D: np.dtype('>f4'), 0x0E: np.dtype('>f8')}

MNIST_SOURCE = ('the four MNIST IDX files (e.g. from the mirror torchvision uses, '
                'https://ossci-datasets.s3.amazonaws.com/mnist/), raw or .gz')
EMNIST_SOURCE = ('the EMNIST IDX files from https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip '
                 '(unzip; the gzip/ folder holds emnist-<split>-*-idx?-ubyte.gz)')
CIFAR10_SOURCE = ('the CIFAR-10 *binary* version, https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz '
                  '(extract; it makes cifar-10-batches-bin/). The python version is pickles, which '
                  'fedjax_lab never loads')
FED_EMNIST_SOURCE = ('TFF\'s https://storage.googleapis.com/tff-datasets-public/fed_emnist.tar.bz2 '
                     '(or fed_emnist_digitsonly.tar.bz2 for only_digits=True); extract the .h5 files')

# EMNIST splits -> number of classes (Cohen et al. 2017). 'letters' labels are stored 1..26.
EMNIST_NUM_CLASSES = {'byclass': 62, 'bymerge': 47, 'balanced': 47, 'letters': 26, 'digits': 10, 'mnist': 10}


class Split(NamedTuple):
  """A centralized train/test split: x_* [N, ...] as stored, y_* [N] int32."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


class FederatedSplit(NamedTuple):
  """Examples with their writers.

  Attributes:
    client_ids: K client id strings, sorted.
    x: [N, 28, 28] float32 as stored.
    y: [N] int32 labels.
    client: [N] int32, index into client_ids of each example's writer.
  """

  client_ids: list[str]
  x: np.ndarray
  y: np.ndarray
  client: np.ndarray


def _missing(path: str, source: str, field: str = 'config.data.data_dir') -> FileNotFoundError:
  return FileNotFoundError(f'Expected the file {path} but it does not exist. Get {source}, and put it there '
                           f'(or point {field} at the folder that holds it).')


def _find(data_dir: str | None, name: str, source: str, allow_gz: bool = True) -> str:
  """Path of `name` (or `name.gz`) in data_dir; FileNotFoundError saying what to put where."""
  if not data_dir:
    raise ValueError(f'config.data.data_dir is required to read {name}; set it to the folder holding {source}.')
  path = os.path.join(os.path.expanduser(data_dir), name)
  candidates = [path, path + '.gz'] if allow_gz else [path]
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  raise _missing(path + (' (or .gz)' if allow_gz else ''), source)


def _read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    head = f.read(2)
  opener = gzip.open if head == b'\x1f\x8b' else open  # gzip magic, whatever the file is called
  with opener(path, 'rb') as f:
    return f.read()


def read_idx(path: str, expected_ndim: int | None = None) -> np.ndarray:
  """Reads one IDX file (raw or gzip-compressed, detected from its first bytes).

  The header is two zero bytes, a type byte (0x08 = uint8, ...), a byte with the number of
  dimensions d, then d big-endian int32 sizes; the data follow in C order.

  Args:
    path: the file.
    expected_ndim: if given, the magic number must announce this many dimensions (3 for images,
      1 for labels: magic 2051 and 2049 for uint8).

  Returns:
    The array with its stored shape, in native byte order.
  """
  if not os.path.isfile(path):
    raise _missing(path, 'an IDX file')
  data = _read_bytes(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f'{path} is not an IDX file: bad magic number {data[:4].hex()} '
                     '(expected 0000 then a type byte 08/09/0b/0c/0d/0e and the number of dimensions).')
  dtype, ndim = _IDX_DTYPES[data[2]], data[3]
  if expected_ndim is not None and ndim != expected_ndim:
    raise ValueError(f'{path}: magic number {data[:4].hex()} announces {ndim} dimensions, expected {expected_ndim} '
                     '(images are idx3, labels idx1: are the file names swapped?).')
  header = 4 + 4 * ndim
  shape = tuple(int(s) for s in np.frombuffer(data, '>i4', count=ndim, offset=4))
  expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) != expected:
    raise ValueError(f'{path}: header says shape {shape} ({expected} bytes in all) but the file has {len(data)} '
                     'bytes; it is truncated or not an IDX file.')
  return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder('='))


def _read_idx_pair(data_dir: str, images: str, labels: str, source: str) -> tuple[np.ndarray, np.ndarray]:
  x = read_idx(_find(data_dir, images, source), expected_ndim=3)
  y = read_idx(_find(data_dir, labels, source), expected_ndim=1)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f'{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels.')
  return x, y.astype(np.int32)


def load_mnist(data_dir: str) -> Split:
  """MNIST from the four IDX files in data_dir.

  Returns:
    Split with x_* [N, 28, 28] uint8 (60000 train, 10000 test for the real files), y_* [N] int32.
  """
  x_train, y_train = _read_idx_pair(data_dir, 'train-images-idx3-ubyte', 'train-labels-idx1-ubyte', MNIST_SOURCE)
  x_test, y_test = _read_idx_pair(data_dir, 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', MNIST_SOURCE)
  return Split(x_train, y_train, x_test, y_test)


def load_emnist(data_dir: str, split: str = 'digits') -> Split:
  """One EMNIST split from `emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]`.

  EMNIST stores each image transposed relative to MNIST; it is transposed back here so digits
  stand upright. The 'letters' split stores labels 1..26; they are shifted to 0..25.

  Args:
    data_dir: folder with the files.
    split: one of EMNIST_NUM_CLASSES ('byclass', 'bymerge', 'balanced', 'letters', 'digits', 'mnist').

  Returns:
    Split with x_* [N, 28, 28] uint8, y_* [N] int32 in [0, EMNIST_NUM_CLASSES[split]).
  """
  if split not in EMNIST_NUM_CLASSES:
    raise ValueError(f'config.data.split={split!r} is not an EMNIST split; choose one of {sorted(EMNIST_NUM_CLASSES)}.')
  arrays = []
  for part in ('train', 'test'):
    x, y = _read_idx_pair(data_dir, f'emnist-{split}-{part}-images-idx3-ubyte',
                          f'emnist-{split}-{part}-labels-idx1-ubyte', EMNIST_SOURCE)
    arrays += [np.ascontiguousarray(x.transpose(0, 2, 1)), y - 1 if split == 'letters' else y]
  return Split(*arrays)


CIFAR10_RECORD = 1 + 32 * 32 * 3


def read_cifar10_bin(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads one CIFAR-10 binary batch.

  Returns:
    x [n, 32, 32, 3] uint8 (height, width, RGB), y [n] int32 in [0, 10).
  """
  if not os.path.isfile(path):
    raise _missing(path, CIFAR10_SOURCE)
  raw = np.fromfile(path, np.uint8)
  if raw.size == 0 or raw.size % CIFAR10_RECORD:
    raise ValueError(f'{path} has {raw.size} bytes, not a multiple of the {CIFAR10_RECORD}-byte CIFAR-10 record; '
                     'is it the binary version (data_batch_N.bin)?')
  records = raw.reshape(-1, CIFAR10_RECORD)
  y = records[:, 0].astype(np.int32)
  if y.max() > 9:
    raise ValueError(f'{path}: label byte {y.max()} > 9; this is not a CIFAR-10 binary batch (CIFAR-100 has 2 '
                     'label bytes per record).')
  x = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel planes -> HWC
  return np.ascontiguousarray(x), y


def load_cifar10(data_dir: str) -> Split:
  """CIFAR-10 from the binary batches in data_dir (or in data_dir/cifar-10-batches-bin/).

  Returns:
    Split with x_* [N, 32, 32, 3] uint8 (50000 train, 10000 test for the real files), y_* [N] int32.
  """
  if not data_dir:
    raise ValueError(f'config.data.data_dir is required for CIFAR-10; set it to the folder holding {CIFAR10_SOURCE}.')
  data_dir = os.path.expanduser(data_dir)
  nested = os.path.join(data_dir, 'cifar-10-batches-bin')
  if not os.path.isfile(os.path.join(data_dir, 'test_batch.bin')) and os.path.isdir(nested):
    data_dir = nested
  train = [read_cifar10_bin(os.path.join(data_dir, f'data_batch_{i}.bin')) for i in range(1, 6)]
  x_test, y_test = read_cifar10_bin(os.path.join(data_dir, 'test_batch.bin'))
  return Split(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_test, y_test)


def fed_emnist_path(data_dir: str, split: str, only_digits: bool = False) -> str:
  """Where the TFF HDF5 file of `split` ('train' or 'test') is expected."""
  name = f'fed_emnist{"_digitsonly" if only_digits else ""}_{split}.h5'
  if not data_dir:
    raise ValueError(f'config.data.data_dir is required for federated EMNIST; set it to the folder holding {name}.')
  return os.path.join(os.path.expanduser(data_dir), name)


def read_fed_emnist_h5(path: str) -> FederatedSplit:
  """Reads a TFF/FedJAX federated EMNIST HDF5 file: `examples/<client_id>/{pixels, label}`.

  Returns:
    FederatedSplit: client_ids sorted; x [N, 28, 28] float32 as stored (TFF stores ink dark, 0, on a
    light background, 1); y [N] int32; client [N] int32 index of each example's writer. Examples are
    grouped by client in client_ids order.
  """
  import h5py  # imported here so that the other readers work without it

  if not os.path.isfile(path):
    raise _missing(path, FED_EMNIST_SOURCE)
  with h5py.File(path, 'r') as f:
    if 'examples' not in f:
      raise ValueError(f'{path} has no top-level group "examples"; expected the TFF layout '
                       'examples/<client_id>/{pixels, label}.')
    client_ids = sorted(f['examples'].keys())
    xs, ys, owners = [], [], []
    for i, cid in enumerate(client_ids):
      group = f['examples'][cid]
      x = np.asarray(group['pixels'], np.float32)
      y = np.asarray(group['label']).astype(np.int32).reshape(-1)
      if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
        raise ValueError(f'{path}: client {cid} has pixels {x.shape} and label {y.shape}; expected [n, 28, 28] '
                         'and [n].')
      xs.append(x)
      ys.append(y)
      owners.append(np.full(len(y), i, np.int32))
  if not client_ids:
    raise ValueError(f'{path} holds no clients under examples/.')
  return FederatedSplit(client_ids, np.concatenate(xs), np.concatenate(ys), np.concatenate(owners))
