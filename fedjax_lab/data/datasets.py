"""Federated data sets by name: built-in ones that need no download, and readers of local files.

Every loader returns a `FederatedDataset`: the padded training clients (`FederatedData`), a
centralized test set, and what a model builder needs (input shape, number of classes). The runner
calls `load_dataset(config.data.name, **rest_of_config.data)`, so keyword names here are config
field names.

  regression         y = X w* + noise, clients optionally shifted (the worked least-squares example).
  fedprox_synthetic  Synthetic(alpha, beta) of Li et al. (2020), natural partition by user.
  digits             scikit-learn's 8x8 digits (ships with scikit-learn), any partitioner.
  mnist1d            MNIST-1D (Greydanus 2020), generated locally and cached as .npz, any partitioner.
  femnist_synthetic  a FEMNIST-sized procedural stand-in (3,400 writers, 62 classes, 28x28), generated
                     once into memory-mapped .npy files in cache_dir (femnist_synthetic.py).
  mnist_idx, emnist_idx, cifar10, femnist
                     files in config.data.data_dir (see loaders.py for names and sources).
  federated_npy      a folder written by `host.save_dataset` in config.data.data_dir (memory-mapped).

Data sets with memory-mapped training clients suit `config.data_placement = 'host'`
(fedjax_lab/data/host.py): the runner then never copies all clients to the device.
"""

from __future__ import annotations

import inspect
import os
import random
import tempfile
from typing import Callable

import numpy as np

from fedjax_lab.data import femnist_synthetic as femnist_synthetic_lib
from fedjax_lab.data import host
from fedjax_lab.data import loaders
from fedjax_lab.data import partition as partition_lib
from fedjax_lab.data.federated import FederatedData, FederatedDataset, pack_clients


def _rng(seed: int, stream: int) -> np.random.Generator:
  """Independent generator per (seed, purpose), so that e.g. data and split draws never interact."""
  return np.random.default_rng([int(seed), stream])


def _partitioned(name, x_train, y_train, x_test, y_test, num_classes, num_clients, partition, seed,
                 partition_kwargs, extras=None) -> FederatedDataset:
  client_indices = partition_lib.partition(partition, y_train, num_clients, seed, **partition_kwargs)
  train = pack_clients(x_train, y_train, client_indices)
  return FederatedDataset(train, np.asarray(x_test), np.asarray(y_test), tuple(x_train.shape[1:]), num_classes,
                          name, dict(extras or {}))


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Per class, a seeded `test_fraction` of the examples goes to test: (train_idx, test_idx), sorted."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    cut = int(round(test_fraction * len(members)))
    test.append(members[:cut])
    train.append(members[cut:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ---------------------------------------------------------------------------------------------
# Synthetic data.


def regression(num_clients: int = 10, examples_per_client: int = 32, dim: int = 10, noise_std: float = 0.1,
               seed: int = 0, heterogeneity: float = 0.0, test_examples_per_client: int | None = None
               ) -> FederatedDataset:
  """Federated least squares: y = x . w* + noise, with client-specific feature means.

  w* ~ N(0, I_dim). Client k draws x ~ N(mu_k, I_dim) with mu_k = heterogeneity * N(0, I_dim), so
  heterogeneity = 0 gives IID clients and larger values make the clients' optima, and their
  covariances E[x x^T] = I + mu_k mu_k^T, differ. Noise ~ N(0, noise_std^2). Every client has the
  same true w*, so the pooled least-squares solution `w_opt` (in extras) approaches w* as data grow.

  Args:
    num_clients: K.
    examples_per_client: training examples per client (all clients equal).
    dim: d, the feature dimension.
    noise_std: standard deviation of the label noise, >= 0.
    seed: seed of everything.
    heterogeneity: scale of the client mean shifts, >= 0.
    test_examples_per_client: test examples drawn from each client's distribution and pooled
      (default: ceil(examples_per_client / 4)).

  Returns:
    FederatedDataset: train.x [K, n, d] float32, train.y [K, n] float32, test set [K * n_test, d],
    num_classes 1; extras: w_star [d], w_opt [d] (pooled least squares on the training data),
    client_means [K, d].
  """
  for field, value, low in (('num_clients', num_clients, 1), ('examples_per_client', examples_per_client, 1),
                            ('dim', dim, 1)):
    if int(value) != value or value < low:
      raise ValueError(f'config.data.{field}={value} must be an integer >= {low}.')
  if noise_std < 0:
    raise ValueError(f'config.data.noise_std={noise_std} must be >= 0.')
  if heterogeneity < 0:
    raise ValueError(f'config.data.heterogeneity={heterogeneity} must be >= 0.')
  n_test = test_examples_per_client or -(-examples_per_client // 4)
  rng = _rng(seed, 1)
  w_star = rng.normal(size=dim)
  means = heterogeneity * rng.normal(size=(num_clients, dim))

  def draw(n):
    x = means[:, None, :] + rng.normal(size=(num_clients, n, dim))
    y = x @ w_star + noise_std * rng.normal(size=(num_clients, n))
    return x.astype(np.float32), y.astype(np.float32)

  x, y = draw(examples_per_client)
  x_test, y_test = draw(n_test)
  train = FederatedData(x, y, np.full(num_clients, examples_per_client, np.int32))
  w_opt = np.linalg.lstsq(x.reshape(-1, dim).astype(np.float64), y.reshape(-1).astype(np.float64), rcond=None)[0]
  extras = {'w_star': w_star.astype(np.float32), 'w_opt': w_opt.astype(np.float32),
            'client_means': means.astype(np.float32)}
  return FederatedDataset(train, x_test.reshape(-1, dim), y_test.reshape(-1), (dim,), 1, 'regression', extras)


def fedprox_synthetic(alpha: float = 1.0, beta: float = 1.0, num_users: int = 30, dim: int = 60,
                      num_classes: int = 10, seed: int = 0, iid: bool = False, train_fraction: float = 0.8,
                      max_samples_per_user: int | None = None, num_clients: int | None = None,
                      partition: str = 'natural') -> FederatedDataset:
  """Synthetic(alpha, beta) of Li et al. (2020, FedProx), following their generator.

  For user k: u_k ~ N(0, alpha^2), B_k ~ N(0, beta^2) (alpha, beta are standard deviations, as in
  the reference code); W_k ~ N(u_k, 1) [dim, classes], b_k ~ N(u_k, 1) [classes];
  v_k ~ N(B_k, 1) [dim]; x ~ N(v_k, Sigma) with Sigma diagonal, Sigma_jj = j^-1.2 (j = 1..dim);
  y = argmax softmax(x W_k + b_k). alpha controls how much the users' models differ, beta how much
  their inputs differ. iid=True: one W, b ~ N(0, 1) for all users and v_k = 0.
  Samples per user: int(LogNormal(4, 2)) + 50 (no cap unless max_samples_per_user is set; the
  largest of 30 users is often several thousand, and every client is padded to it). Each user's
  examples are shuffled and split train_fraction / rest into train / test (the paper says 80/20;
  the released generator uses 0.9); test examples of all users are pooled.

  Args:
    alpha: model heterogeneity (std of u_k), >= 0 (`config.data.alpha`).
    beta: input heterogeneity (std of B_k), >= 0 (`config.data.beta`).
    num_users: K, users = clients.
    dim: input dimension (60 in the paper).
    num_classes: 10 in the paper.
    seed: seed of the generator.
    iid: the paper's Synthetic-IID variant.
    train_fraction: per-user fraction of examples used for training.
    max_samples_per_user: optional cap on each user's total sample count (an addition).
    num_clients: alias of num_users, so that configs can say config.data.num_clients.
    partition: must be 'natural' (by user); accepted so a config may state it.

  Returns:
    FederatedDataset: train.x [K, M, dim] float32, y int32; extras: samples_per_user [K] (before the
    split), test_client [N_test] int32 (the user of each test example), alpha, beta, iid.
  """
  if partition != 'natural':
    raise ValueError(f"config.data.partition={partition!r}: fedprox_synthetic is partitioned by user; use 'natural' "
                     'or drop the field.')
  if num_clients is not None:
    if num_users not in (30, num_clients):
      raise ValueError(f'config.data.num_clients={num_clients} and config.data.num_users={num_users} disagree; set one.')
    num_users = num_clients
  if alpha < 0 or beta < 0:
    raise ValueError(f'config.data.alpha={alpha} and config.data.beta={beta} must be >= 0 (the paper uses 0, 0.5, 1).')
  for field, value in (('num_users', num_users), ('dim', dim), ('num_classes', num_classes)):
    if int(value) != value or value < 1:
      raise ValueError(f'config.data.{field}={value} must be an integer >= 1.')
  if not 0 < train_fraction < 1:
    raise ValueError(f'config.data.train_fraction={train_fraction} must lie in (0, 1).')
  if max_samples_per_user is not None and max_samples_per_user < 50:
    raise ValueError(f'config.data.max_samples_per_user={max_samples_per_user} must be >= 50 (the minimum count).')
  rng = _rng(seed, 2)
  samples = rng.lognormal(4, 2, num_users).astype(np.int64) + 50
  if max_samples_per_user is not None:
    samples = np.minimum(samples, max_samples_per_user)
  u = rng.normal(0, alpha, num_users)
  big_b = rng.normal(0, beta, num_users)
  sigma_diag = np.arange(1, dim + 1, dtype=np.float64) ** -1.2
  v = np.zeros((num_users, dim)) if iid else rng.normal(big_b[:, None], 1, (num_users, dim))
  if iid:
    w_shared = rng.normal(0, 1, (dim, num_classes))
    b_shared = rng.normal(0, 1, num_classes)
  train_idx, test_parts_x, test_parts_y, test_owner, xs, ys = [], [], [], [], [], []
  for k in range(num_users):
    w = w_shared if iid else rng.normal(u[k], 1, (dim, num_classes))
    b = b_shared if iid else rng.normal(u[k], 1, num_classes)
    x = v[k] + np.sqrt(sigma_diag) * rng.normal(size=(samples[k], dim))
    y = np.argmax(x @ w + b, axis=1).astype(np.int32)  # argmax of softmax = argmax of the logits
    order = rng.permutation(samples[k])
    n_train = int(train_fraction * samples[k])
    xs.append(x[order[:n_train]])
    ys.append(y[order[:n_train]])
    test_parts_x.append(x[order[n_train:]])
    test_parts_y.append(y[order[n_train:]])
    test_owner.append(np.full(samples[k] - n_train, k, np.int32))
  sizes = [len(y) for y in ys]
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  client_indices = [np.arange(s, s + n) for s, n in zip(starts, sizes)]
  train = pack_clients(np.concatenate(xs).astype(np.float32), np.concatenate(ys), client_indices)
  extras = {'samples_per_user': samples, 'test_client': np.concatenate(test_owner), 'alpha': alpha, 'beta': beta,
            'iid': iid}
  return FederatedDataset(train, np.concatenate(test_parts_x).astype(np.float32), np.concatenate(test_parts_y),
                          (dim,), num_classes, 'fedprox_synthetic', extras)


# ---------------------------------------------------------------------------------------------
# Small real data that ships with a package or is generated locally.


def digits(num_clients: int = 10, partition: str = 'iid', seed: int = 0, split_seed: int = 0,
           **partition_kwargs) -> FederatedDataset:
  """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes; no download).

  x is scaled from 0..16 to [0, 1]. A stratified 80/20 train/test split, fixed by `split_seed`
  (independent of `seed`, so runs with different seeds share the test set), leaves 1438 training
  examples, partitioned by `partition` with `seed`.

  Args:
    num_clients: K.
    partition: a name in partition.PARTITIONERS (`config.data.partition`).
    seed: seed of the partition.
    split_seed: seed of the train/test split.
    **partition_kwargs: the partitioner's arguments (alpha, k, shards_per_client, ...).

  Returns:
    FederatedDataset with x [K, M, 8, 8] float32, y int32, test set [359, 8, 8].
  """
  from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

  bunch = load_digits()
  x = (bunch.images / 16.0).astype(np.float32)
  y = bunch.target.astype(np.int32)
  train, test = _stratified_split(y, 0.2, split_seed)
  return _partitioned('digits', x[train], y[train], x[test], y[test], 10, num_clients, partition, seed,
                      partition_kwargs)


MNIST1D_FILE = 'mnist1d_default_args.npz'


def cache_dir_default() -> str:
  """`$FEDJAX_LAB_CACHE` if set, else ~/.cache/fedjax_lab."""
  return os.environ.get('FEDJAX_LAB_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'fedjax_lab')


def _generate_mnist1d() -> dict[str, np.ndarray]:
  """Runs the mnist1d generator with its default arguments (seed 42): 4000 train + 1000 test.

  The package seeds and uses numpy's and Python's global RNGs (on import and in make_dataset);
  both are restored afterwards so that nothing else in the process sees a changed global state.
  """
  numpy_state, python_state = np.random.get_state(), random.getstate()
  try:
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset: it downloads a pickle
    data = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(numpy_state)
    random.setstate(python_state)
  return {'x': data['x'].astype(np.float32), 'y': data['y'].astype(np.int32),
          'x_test': data['x_test'].astype(np.float32), 'y_test': data['y_test'].astype(np.int32)}


def mnist1d_arrays(cache_dir: str | None = None) -> dict[str, np.ndarray]:
  """MNIST-1D arrays x [4000, 40], y [4000], x_test [1000, 40], y_test [1000], cached as .npz.

  The first call generates (a few seconds) and writes `cache_dir/mnist1d_default_args.npz`
  atomically; later calls read it (no pickle involved: `allow_pickle=False`).
  """
  cache_dir = os.path.expanduser(cache_dir or cache_dir_default())
  path = os.path.join(cache_dir, MNIST1D_FILE)
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in ('x', 'y', 'x_test', 'y_test')}
  arrays = _generate_mnist1d()
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.npz', dir=cache_dir)
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return arrays


def mnist1d(num_clients: int = 100, partition: str = 'iid', seed: int = 0, cache_dir: str | None = None,
            **partition_kwargs) -> FederatedDataset:
  """MNIST-1D (Greydanus 2020): 10 classes of 1-D signals of length 40, generated offline.

  Args:
    num_clients: K.
    partition: a name in partition.PARTITIONERS (`config.data.partition`).
    seed: seed of the partition (the data themselves are always the package's seed-42 set).
    cache_dir: where the generated .npz lives (default `$FEDJAX_LAB_CACHE` or ~/.cache/fedjax_lab).
    **partition_kwargs: the partitioner's arguments (alpha, k, shards_per_client, ...).

  Returns:
    FederatedDataset with x [K, M, 40] float32, y int32, test set [1000, 40].
  """
  a = mnist1d_arrays(cache_dir)
  return _partitioned('mnist1d', a['x'], a['y'], a['x_test'], a['y_test'], 10, num_clients, partition, seed,
                      partition_kwargs)


def femnist_synthetic(num_clients: int = 3400, mean_examples: int = 220, seed: int = 0, cache_dir: str | None = None,
                      test_examples: int = 2000, partition: str = 'natural', chunk_clients: int = 64,
                      mmap: bool = True, validate: bool = True) -> FederatedDataset:
  """A FEMNIST-sized synthetic stand-in (see femnist_synthetic.py), cached as memory-mapped .npy files.

  The first call with given (num_clients, mean_examples, seed, test_examples) generates the data
  into `cache_dir/femnist_synthetic/...` chunk by chunk (the full size is ~4.7 GB and a few minutes
  on 2 cores); later calls map the files, so the training clients are read only when indexed.

  Args:
    num_clients: K writers (3,400 like FEMNIST; tests use ~40).
    mean_examples: mean training examples per writer (~220 like FEMNIST); clients are padded to 2x.
    seed: seed of prototypes, writers and sizes.
    cache_dir: where the files live (default `$FEDJAX_LAB_CACHE` or ~/.cache/fedjax_lab).
    test_examples: size of the pooled test split (more examples of the same writers).
    partition: must be 'natural' (one client per synthetic writer).
    chunk_clients: clients generated and written at once (memory, not results, depends on it).
    mmap: map the training arrays (True) or read them into RAM.
    validate: scan the cached files' values at load, as `federated_npy` does (catches a damaged cache).

  Returns:
    FederatedDataset: train.x [K, 2 * mean_examples, 28, 28] float32 (memmap), y int32, 62 classes,
    test set [test_examples, 28, 28]; extras: cache folder.
  """
  if partition != 'natural':
    raise ValueError(f"config.data.partition={partition!r}: femnist_synthetic is partitioned by writer; use "
                     "'natural' or drop the field.")
  for field, value, low in (('num_clients', num_clients, 1), ('mean_examples', mean_examples, 1),
                            ('test_examples', test_examples, 1), ('chunk_clients', chunk_clients, 1)):
    if int(value) != value or value < low:
      raise ValueError(f'config.data.{field}={value} must be an integer >= {low}.')
  folder = femnist_synthetic_lib.cache_folder(cache_dir or cache_dir_default(), int(num_clients),
                                              int(mean_examples), int(seed), int(test_examples))
  if not os.path.isfile(os.path.join(folder, host.DATASET_JSON)):
    femnist_synthetic_lib.generate(folder, int(num_clients), int(mean_examples), int(seed), int(test_examples),
                                   int(chunk_clients))
  return host.load_saved_dataset(folder, mmap=mmap, validate_contents=validate)


def federated_npy(data_dir: str | None = None, mmap: bool = True, seed: int = 0,
                  validate: bool = True) -> FederatedDataset:
  """A data set saved with `fedjax_lab.data.host.save_dataset` (config.data.data_dir), memory-mapped.

  The files are checked at load (fedjax_lab/data/validate.py): shapes against dataset.json always,
  and with `validate` (config.data.validate) one scan of the values, in bounded memory: integer
  labels in [0, num_classes), num_examples integer in [0, M], finite floating-point features. Each
  error names the file and the first offending client and row. The scan reads every byte once: 0.04 s
  for a 204 MB folder already in the page cache (2-core CPU), linear in size, at disk speed when the
  files are cold; validate=False skips it.

  `seed` is accepted (the runner passes config.seed) and unused: the folder fixes the data.
  """
  del seed
  return host.load_saved_dataset(data_dir, mmap=mmap, validate_contents=validate)


# ---------------------------------------------------------------------------------------------
# Files in config.data.data_dir.


def _scale_uint8(x: np.ndarray) -> np.ndarray:
  return (x.astype(np.float32) / 255.0)


def mnist_idx(data_dir: str | None = None, num_clients: int = 100, partition: str = 'iid', seed: int = 0,
              **partition_kwargs) -> FederatedDataset:
  """MNIST from IDX files in data_dir; x scaled to [0, 1], shape (28, 28); any partitioner."""
  s = loaders.load_mnist(data_dir)
  return _partitioned('mnist_idx', _scale_uint8(s.x_train), s.y_train, _scale_uint8(s.x_test), s.y_test, 10,
                      num_clients, partition, seed, partition_kwargs)


def emnist_idx(data_dir: str | None = None, split: str = 'digits', num_clients: int = 100, partition: str = 'iid',
               seed: int = 0, **partition_kwargs) -> FederatedDataset:
  """One EMNIST split from IDX files in data_dir; x [.., 28, 28] in [0, 1]; any partitioner."""
  s = loaders.load_emnist(data_dir, split)
  return _partitioned('emnist_idx', _scale_uint8(s.x_train), s.y_train, _scale_uint8(s.x_test), s.y_test,
                      loaders.EMNIST_NUM_CLASSES[split], num_clients, partition, seed, partition_kwargs,
                      {'split': split})


def cifar10(data_dir: str | None = None, num_clients: int = 100, partition: str = 'iid', seed: int = 0,
            **partition_kwargs) -> FederatedDataset:
  """CIFAR-10 from the binary batches in data_dir; x [.., 32, 32, 3] in [0, 1]; any partitioner."""
  s = loaders.load_cifar10(data_dir)
  return _partitioned('cifar10', _scale_uint8(s.x_train), s.y_train, _scale_uint8(s.x_test), s.y_test, 10,
                      num_clients, partition, seed, partition_kwargs)


def femnist(data_dir: str | None = None, num_clients: int | None = None, seed: int = 0, only_digits: bool = False,
            invert: bool = True, partition: str = 'natural') -> FederatedDataset:
  """Federated EMNIST (TFF/FedJAX HDF5 files), one client per writer.

  The train file's writers are the clients (3400 in the full set, 3383 with only_digits). With
  num_clients set, a seeded random subset of that many writers is kept, and the pooled test set holds
  those writers' test examples. invert=True maps pixels p -> 1 - p, as FedJAX does, so ink is 1 on a
  background of 0 like MNIST.

  Args:
    data_dir: folder with fed_emnist[_digitsonly]_{train,test}.h5.
    num_clients: keep this many writers (default: all).
    seed: seed of the writer subset.
    only_digits: read the digits-only files (10 classes instead of 62).
    invert: 1 - pixels.
    partition: must be 'natural'.

  Returns:
    FederatedDataset with x [K, M, 28, 28] float32, y int32; extras: client_ids [K] (writer ids),
    test_client [N_test] int32 (index into client_ids).
  """
  if partition != 'natural':
    raise ValueError(f"config.data.partition={partition!r}: femnist is partitioned by writer; use 'natural' "
                     'or drop the field.')
  train = loaders.read_fed_emnist_h5(loaders.fed_emnist_path(data_dir, 'train', only_digits))
  test = loaders.read_fed_emnist_h5(loaders.fed_emnist_path(data_dir, 'test', only_digits))
  ids = train.client_ids
  keep = np.arange(len(ids))
  if num_clients is not None:
    if int(num_clients) != num_clients or not 1 <= num_clients <= len(ids):
      raise ValueError(f'config.data.num_clients={num_clients} must lie in [1, {len(ids)}] (writers in the file).')
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), int(num_clients), replace=False))
  kept_ids = [ids[i] for i in keep]
  position = {cid: j for j, cid in enumerate(kept_ids)}
  client_indices = [np.flatnonzero(train.client == i) for i in keep]
  test_owner = np.array([position.get(test.client_ids[c], -1) for c in test.client], np.int32)
  in_test = test_owner >= 0
  fix = (lambda p: 1.0 - p) if invert else (lambda p: p)
  packed = pack_clients(fix(train.x), train.y, client_indices)
  extras = {'client_ids': kept_ids, 'test_client': test_owner[in_test], 'only_digits': only_digits}
  return FederatedDataset(packed, fix(test.x[in_test]), test.y[in_test], (28, 28), 10 if only_digits else 62,
                          'femnist', extras)


# ---------------------------------------------------------------------------------------------
# Registry.

DATASETS: dict[str, Callable[..., FederatedDataset]] = {
    'regression': regression,
    'fedprox_synthetic': fedprox_synthetic,
    'digits': digits,
    'mnist1d': mnist1d,
    'mnist_idx': mnist_idx,
    'emnist_idx': emnist_idx,
    'cifar10': cifar10,
    'femnist': femnist,
    'femnist_synthetic': femnist_synthetic,
    'federated_npy': federated_npy,
}


def load_dataset(name: str, **kwargs) -> FederatedDataset:
  """Loads data set `name` (`config.data.name`) with the other config.data fields as keywords.

  Raises:
    ValueError: an unknown name or keyword (naming the config field), or an invalid value.
    FileNotFoundError: a file-based data set whose file is missing (the message says where to put it).
  """
  if name not in DATASETS:
    raise ValueError(f'config.data.name={name!r} is not a data set; choose one of {sorted(DATASETS)}.')
  loader = DATASETS[name]
  params = inspect.signature(loader).parameters
  takes_partition_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
  if not takes_partition_kwargs:
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
      raise ValueError(f'config.data.{unknown[0]} is not an argument of data set {name!r} '
                       f'(it takes {sorted(params)}).')
  return loader(**kwargs)
