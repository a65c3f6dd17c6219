"""Host-resident federated data: cohorts gathered from host (or memory-mapped) arrays, prefetched.

When the training clients do not fit on the device, the `FederatedData` stays in host memory
(numpy, usually memory-mapped `.npy` files) and only one round's cohort travels:

  1. `sample_cohort` draws the round's ids, dropouts and Byzantine flags from the round key: the
     same function the compiled device path calls, run here on the CPU backend (integer PRNG
     arithmetic is bit-identical across backends), so host and device runs train the same clients;
  2. `gather_host` reads the cohort's rows with numpy, in sorted order (sequential reads on a
     memmap), and restores the cohort's order;
  3. `jax.device_put` moves the cohort, split over the mesh's 'clients' axis when there is one;
  4. `Prefetcher` does 1-3 for round r+1 on a background thread while round r computes.

On disk a FederatedData is a folder (`save_federated` / `load_federated`):

  federated.json    {"format": 1, "arrays": {"x": {"shape": [K, M, ...], "dtype": "float32"}, ...}}
  x.npy [K, M, ...], y.npy [K, M], num_examples.npy [K]

and a whole data set (`save_dataset` / `load_saved_dataset`, registry name 'federated_npy') adds
a test split and what a model builder needs:

  dataset.json      {"name", "input_shape", "num_classes"}
  train/            a FederatedData folder as above
  test_x.npy [N, ...], test_y.npy [N]
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
from typing import Any, Callable, Generic, Iterable, TypeVar

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab.data import validate
from fedjax_lab.data.federated import FederatedData, FederatedDataset
from fedjax_lab.data.sampling import RoundInputs, sample_cohort

FORMAT_VERSION = 1
FEDERATED_JSON = 'federated.json'
DATASET_JSON = 'dataset.json'
_FIELDS = FederatedData._fields
T = TypeVar('T')


# ---------------------------------------------------------------------------------------------
# Files.


def _check_folder(directory: str, marker: str, how: str) -> str:
  directory = os.path.expanduser(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'Data folder {directory!r} does not exist; {how}')
  if not os.path.isfile(os.path.join(directory, marker)):
    raise FileNotFoundError(f'{os.path.join(directory, marker)!r} is missing, so {directory!r} is not a complete '
                            f'data folder (an interrupted write leaves no {marker}); {how}')
  return directory


def save_federated(data: FederatedData, directory: str) -> None:
  """Writes `data` as x.npy, y.npy, num_examples.npy and federated.json (written last) in `directory`."""
  os.makedirs(directory, exist_ok=True)
  meta = {}
  for name, array in zip(_FIELDS, data):
    array = np.asarray(array)
    np.save(os.path.join(directory, f'{name}.npy'), array, allow_pickle=False)
    meta[name] = {'shape': list(array.shape), 'dtype': array.dtype.str}
  write_federated_json(directory, meta)


def write_federated_json(directory: str, meta: dict[str, dict]) -> None:
  """Writes federated.json: the marker that the .npy files beside it are complete."""
  with open(os.path.join(directory, FEDERATED_JSON), 'w') as f:
    json.dump({'format': FORMAT_VERSION, 'arrays': meta}, f, indent=2)


def load_federated(directory: str, mmap: bool = True) -> FederatedData:
  """Reads a folder written by `save_federated`; memory-mapped read-only by default.

  Checks the files against federated.json (shapes, dtypes) and the client axis; the contents are
  checked by `load_saved_dataset` (`validate.validate_federated_arrays`), which knows num_classes.

  Args:
    directory: the folder.
    mmap: True: leaves are `np.memmap`s (nothing is read until rows are indexed); False: in RAM.

  Returns:
    FederatedData with numpy leaves x [K, M, ...], y [K, M], num_examples [K].

  Raises:
    FileNotFoundError: no such folder, or it lacks federated.json or a .npy file.
    ValueError: a broken federated.json or .npy file (truncated, not JSON), or a file's shape or dtype
      differs from federated.json; the message names the file.
  """
  how = 'write one with fedjax_lab.data.host.save_federated(data, directory).'
  directory = _check_folder(directory, FEDERATED_JSON, how)
  json_path = os.path.join(directory, FEDERATED_JSON)
  meta = validate.read_json(json_path, ('arrays',), how)['arrays']
  arrays = []
  for name in _FIELDS:
    path = os.path.join(directory, f'{name}.npy')
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{path!r} is missing; {how}')
    want = meta.get(name) if isinstance(meta, dict) else None
    if not isinstance(want, dict) or 'shape' not in want or 'dtype' not in want:
      raise ValueError(f'{json_path!r} has no "shape" and "dtype" for {name!r} under "arrays"; {how}')
    array = validate.load_npy(path, mmap, how)
    if list(array.shape) != list(want['shape']) or array.dtype != np.dtype(want['dtype']):
      raise ValueError(f'{path!r} holds {array.dtype}{list(array.shape)} but {FEDERATED_JSON} says '
                       f'{np.dtype(want["dtype"])}{want["shape"]}; rewrite the folder.')
    arrays.append(array)
  data = FederatedData(*arrays)
  if data.x.ndim < 2 or data.y.shape[:2] != data.x.shape[:2] or data.num_examples.shape != data.x.shape[:1]:
    raise ValueError(f'{directory!r}: x {data.x.shape}, y {data.y.shape} and num_examples '
                     f'{data.num_examples.shape} do not share the client axis [K, M].')
  return data


def save_dataset(dataset, directory: str) -> None:
  """Writes a `FederatedDataset` (train clients, test split, input shape, classes) to `directory`."""
  save_federated(dataset.train, os.path.join(directory, 'train'))
  np.save(os.path.join(directory, 'test_x.npy'), np.asarray(dataset.test_x), allow_pickle=False)
  np.save(os.path.join(directory, 'test_y.npy'), np.asarray(dataset.test_y), allow_pickle=False)
  write_dataset_json(directory, dataset.name, dataset.input_shape, dataset.num_classes)


def write_dataset_json(directory: str, name: str, input_shape, num_classes: int) -> None:
  with open(os.path.join(directory, DATASET_JSON), 'w') as f:
    json.dump({'format': FORMAT_VERSION, 'name': name, 'input_shape': list(input_shape),
               'num_classes': int(num_classes)}, f, indent=2)


def load_saved_dataset(data_dir: str | None = None, mmap: bool = True, validate_contents: bool = True):
  """Reads a folder written by `save_dataset` (registry name 'federated_npy', `config.data.data_dir`).

  Shapes and dtypes are always checked against dataset.json and federated.json; with
  `validate_contents` the values are scanned once too (labels in range, counts in [0, M], finite
  features; `validate.validate_federated_arrays`), in bounded memory, so bad data fail here with the
  file, client and row named instead of training on them.

  Args:
    data_dir: the folder.
    mmap: memory-map the training arrays (True) or read them into RAM.
    validate_contents: scan the values (`config.data.validate`); shapes are checked regardless.

  Returns:
    FederatedDataset whose train leaves are memmaps (mmap=True); the test split is read into RAM.

  Raises:
    FileNotFoundError: a missing folder or file.
    ValueError: a broken file (truncated .npy, invalid JSON) or contents training cannot use.
  """
  how = ('set config.data.data_dir to a folder written by fedjax_lab.data.host.save_dataset(dataset, folder) '
         '(it holds dataset.json, train/ and test_x.npy, test_y.npy).')
  if data_dir is None:
    raise ValueError(f'config.data.data_dir is not set; {how}')
  data_dir = _check_folder(data_dir, DATASET_JSON, how)
  meta_path = os.path.join(data_dir, DATASET_JSON)
  name, input_shape, num_classes = validate.dataset_meta(meta_path, how)
  train_dir = os.path.join(data_dir, 'train')
  train = load_federated(train_dir, mmap=mmap)
  test = []
  for array_name in ('test_x', 'test_y'):
    path = os.path.join(data_dir, f'{array_name}.npy')
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{path!r} is missing; {how}')
    test.append(validate.load_npy(path, False, how))
  paths = {field: os.path.join(train_dir, f'{field}.npy') for field in _FIELDS}
  paths.update(test_x=os.path.join(data_dir, 'test_x.npy'), test_y=os.path.join(data_dir, 'test_y.npy'),
               meta=meta_path)
  validate.validate_federated_arrays(*train, num_classes, input_shape, test[0], test[1], paths=paths,
                                     contents=validate_contents,
                                     how='Rewrite the folder with fedjax_lab.data.host.save_dataset.')
  return FederatedDataset(train, test[0], test[1], input_shape, num_classes, name, {'data_dir': data_dir})


# ---------------------------------------------------------------------------------------------
# Cohorts.


def gather_host(data: FederatedData, client_ids: np.ndarray) -> FederatedData:
  """Rows `client_ids` [C] of host arrays, in that order; reads each distinct row once, sorted.

  Equals `gather_clients(data, client_ids)`; on a memmap, sorted reads are sequential on disk.
  """
  client_ids = np.asarray(client_ids)
  unique, inverse = np.unique(client_ids, return_inverse=True)
  return FederatedData(*(np.asarray(a[unique])[inverse] for a in data))


def cohort_sharding(mesh, clients_per_round: int):
  """Where a cohort goes: split over mesh axis 'clients' when C divides evenly, else replicated.

  `clients.placement` runs the cohort under `shard_map` with `in_specs=P('clients')`, so a
  cohort already split that way needs no resharding; None (no mesh) means the default device.
  """
  if mesh is None:
    return None
  devices = int(mesh.shape['clients'])
  spec = P('clients') if clients_per_round % devices == 0 else P()
  return NamedSharding(mesh, spec)


def make_cohort_loader(
    data: FederatedData,
    clients_per_round: int,
    base_key,
    dropout_rate: float = 0.0,
    byzantine=None,
    sharding=None,
    sampling: str = 'fixed_size',
    capacity: int | None = None,
) -> Callable[[int], RoundInputs]:
  """`load(round_index) -> RoundInputs` on the device, the cohort the device path draws for that round.

  The round's key follows the runner: key = fold_in(base_key, round); sample_key, _ = split(key);
  the cohort is `sample_cohort(sample_key, ...)`, i.e. exactly `sample_round`'s draw.

  Args:
    data: host FederatedData (numpy or memmap leaves), x [K, M, ...], y [K, M], num_examples [K].
    clients_per_round: C.
    base_key: the run's base PRNG key (a typed key).
    dropout_rate: probability that a sampled client never reports.
    byzantine: optional [K] bool mask of Byzantine clients (any array; copied to the host).
    sharding: optional sharding of every RoundInputs leaf (see `cohort_sharding`); None: default device.
    sampling, capacity: config.sampling and the cohort length, as in `sample_cohort`.

  Returns:
    A function of the round index returning RoundInputs with leaves [C, ...] (C = capacity under
    Poisson sampling) on the device. It is
    safe to call from a background thread.
  """
  num_clients = int(data.num_examples.shape[0])
  cpu = jax.local_devices(backend='cpu')[0]  # this process' own (multi-process runs)
  # Drawing on the CPU backend keeps the tiny sampling kernel out of the accelerator's queue,
  # where it would wait for the running round and defeat the prefetch.
  cpu_key = jax.random.wrap_key_data(jax.device_put(np.asarray(jax.random.key_data(base_key)), cpu),
                                     impl=jax.random.key_impl(base_key))
  host_byzantine = None if byzantine is None else np.asarray(jax.device_get(byzantine), bool)

  @jax.jit
  def draw(key, round_index):
    sample_key, _ = jax.random.split(jax.random.fold_in(key, round_index))
    return sample_cohort(sample_key, num_clients, clients_per_round, dropout_rate, sampling=sampling,
                         capacity=capacity)

  def load(round_index: int) -> RoundInputs:
    ids, participation, _ = jax.device_get(draw(cpu_key, jax.device_put(np.int32(round_index), cpu)))
    cohort_byzantine = (np.zeros(ids.shape, bool) if host_byzantine is None
                        else host_byzantine[ids])
    inputs = RoundInputs(gather_host(data, ids), ids, participation, cohort_byzantine)
    return jax.device_put(inputs, sharding)

  return load


# ---------------------------------------------------------------------------------------------
# Prefetching.


class Prefetcher(Generic[T]):
  """Iterates `produce(i)` for i in `indices`, preparing the next `depth` items on a background thread.

  Items come back in the order of `indices`; an exception raised by `produce` is re-raised by
  `next()` for that item. depth=0 produces each item in the caller's thread (no prefetch). Use as a
  context manager (or call `close()`), which cancels work not yet started and joins the thread.

    with Prefetcher(load, range(start, stop)) as rounds:
      for inputs in rounds:
        ...
  """

  def __init__(self, produce: Callable[[int], T], indices: Iterable[int], depth: int = 1):
    if depth < 0:
      raise ValueError(f'prefetch depth={depth} must be >= 0.')
    self._produce = produce
    self._indices = iter(indices)
    self._depth = depth
    self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
    # One worker: items are produced strictly in order, and at most `depth` are in flight.
    self._executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='prefetch')
                      if depth > 0 else None)
    self._closed = False
    if self._executor is not None:
      while len(self._pending) < depth and self._submit_next():
        pass

  def _submit_next(self) -> bool:
    index = next(self._indices, None)
    if index is None:
      return False
    self._pending.append(self._executor.submit(self._produce, index))
    return True

  def __iter__(self):
    return self

  def __next__(self) -> T:
    if self._closed:
      raise StopIteration
    if self._executor is None:
      index = next(self._indices, None)
      if index is None:
        raise StopIteration
      return self._produce(index)
    if not self._pending and not self._submit_next():
      raise StopIteration
    current = self._pending.popleft()
    while len(self._pending) < self._depth and self._submit_next():
      pass
    return current.result()  # re-raises the worker's exception here

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._executor is not None:
      for future in self._pending:
        future.cancel()
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._pending.clear()

  def __enter__(self) -> 'Prefetcher[T]':
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
