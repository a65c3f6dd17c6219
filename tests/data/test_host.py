"""Host-resident data: .npy folders (mmap), the host cohort equals the device path's, the prefetcher."""

import json
import os
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab.clients import placement
from fedjax_lab.data import FederatedData, datasets, gather_clients, host, pack_clients, sample_round, sampling


def _data(num_clients=9, max_examples=5, seed=0):
  rng = np.random.default_rng(seed)
  sizes = rng.integers(1, max_examples + 1, num_clients)
  x = rng.normal(size=(int(sizes.sum()), 3, 2)).astype(np.float32)
  y = rng.integers(0, 4, int(sizes.sum())).astype(np.int32)
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  return pack_clients(x, y, [np.arange(s, s + n) for s, n in zip(starts, sizes)], max_examples=max_examples)


def test_save_load_round_trip_is_memory_mapped(tmp_path):
  data = _data()
  host.save_federated(data, str(tmp_path / 'fed'))
  loaded = host.load_federated(str(tmp_path / 'fed'))
  assert all(isinstance(a, np.memmap) for a in loaded)
  for a, b in zip(data, loaded):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype
  meta = json.load(open(tmp_path / 'fed' / host.FEDERATED_JSON))
  assert meta['arrays']['x']['shape'] == [9, 5, 3, 2]
  in_ram = host.load_federated(str(tmp_path / 'fed'), mmap=False)
  assert not isinstance(in_ram.x, np.memmap)
  np.testing.assert_array_equal(in_ram.y, data.y)


def test_missing_folder_or_file_says_what_to_create(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist.*save_federated'):
    host.load_federated(str(tmp_path / 'nowhere'))
  host.save_federated(_data(), str(tmp_path / 'fed'))
  os.remove(tmp_path / 'fed' / 'y.npy')
  with pytest.raises(FileNotFoundError, match=r"y\.npy' is missing"):
    host.load_federated(str(tmp_path / 'fed'))
  os.remove(tmp_path / 'fed' / host.FEDERATED_JSON)
  with pytest.raises(FileNotFoundError, match='not a complete data folder'):
    host.load_federated(str(tmp_path / 'fed'))


def test_shape_mismatch_with_the_json_is_an_error(tmp_path):
  host.save_federated(_data(), str(tmp_path / 'fed'))
  np.save(tmp_path / 'fed' / 'num_examples.npy', np.zeros(3, np.int32))
  with pytest.raises(ValueError, match='num_examples.npy.*rewrite'):
    host.load_federated(str(tmp_path / 'fed'))


def test_saved_dataset_loads_through_the_registry(tmp_path):
  dataset = datasets.digits(num_clients=5, seed=1)
  host.save_dataset(dataset, str(tmp_path / 'digits'))
  loaded = datasets.load_dataset('federated_npy', data_dir=str(tmp_path / 'digits'))
  assert isinstance(loaded.train.x, np.memmap)
  np.testing.assert_array_equal(loaded.train.x, dataset.train.x)
  np.testing.assert_array_equal(loaded.test_y, dataset.test_y)
  assert (loaded.input_shape, loaded.num_classes, loaded.name) == ((8, 8), 10, 'digits')
  with pytest.raises(FileNotFoundError, match='config.data.data_dir'):
    datasets.load_dataset('federated_npy', data_dir=str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='config.data.data_dir is not set'):
    datasets.load_dataset('federated_npy')


def test_gather_host_keeps_the_cohort_order_and_repeats():
  data = _data()
  ids = np.array([7, 2, 7, 0, 5], np.int32)
  for a, b in zip(host.gather_host(data, ids), gather_clients(data, ids)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('dropout_rate, with_byzantine', [(0.0, False), (0.3, True)])
def test_host_cohort_equals_the_device_path(tmp_path, dropout_rate, with_byzantine):
  host.save_federated(_data(num_clients=11), str(tmp_path / 'fed'))
  data = host.load_federated(str(tmp_path / 'fed'))
  byzantine = sampling.byzantine_mask(11, 0.3, seed=2) if with_byzantine else None
  base_key = jax.random.key(5)
  load = host.make_cohort_loader(data, 4, base_key, dropout_rate, byzantine)
  device_data = FederatedData(*(jnp.asarray(a) for a in data))
  for r in (0, 1, 7):
    # The runner's key derivation: key = fold_in(base, r); sample_key, step_key = split(key).
    sample_key, _ = jax.random.split(jax.random.fold_in(base_key, r))
    expected = jax.jit(lambda k: sample_round(device_data, k, 4, dropout_rate, byzantine))(sample_key)
    got = load(r)
    assert isinstance(got.data.x, jax.Array)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(load(0).client_ids), np.asarray(load(1).client_ids))


def test_cohort_is_split_over_the_mesh_when_it_divides():
  mesh = placement.client_mesh(4)
  assert host.cohort_sharding(mesh, 8).spec == P('clients')
  assert host.cohort_sharding(mesh, 6).spec == P()
  assert host.cohort_sharding(None, 6) is None
  data = _data(num_clients=10)
  inputs = host.make_cohort_loader(data, 8, jax.random.key(0), sharding=host.cohort_sharding(mesh, 8))(3)
  assert inputs.data.x.sharding == NamedSharding(mesh, P('clients'))
  assert inputs.participation.sharding == NamedSharding(mesh, P('clients'))
  np.testing.assert_array_equal(np.asarray(inputs.data.x), gather_clients(data, np.asarray(inputs.client_ids)).x)


def test_prefetcher_yields_in_order_and_works_ahead():
  produced = []
  ahead = threading.Event()

  def produce(i):
    produced.append(i)
    if i == 3:
      ahead.set()
    return i * i

  with host.Prefetcher(produce, range(2, 7), depth=1) as items:
    assert next(items) == 4
    assert ahead.wait(5.0)  # item 3 is prepared while the caller holds item 2
    assert list(items) == [9, 16, 25, 36]
  assert produced == [2, 3, 4, 5, 6]
  assert list(host.Prefetcher(produce, range(3), depth=0)) == [0, 1, 4]
  assert list(host.Prefetcher(produce, range(5), depth=3)) == [0, 1, 4, 9, 16]


def test_prefetcher_reraises_the_worker_exception_in_order():
  def produce(i):
    if i == 2:
      raise KeyError(f'round {i} is broken')
    return i

  with host.Prefetcher(produce, range(5)) as items:
    assert next(items) == 0 and next(items) == 1
    with pytest.raises(KeyError, match='round 2 is broken'):
      next(items)


def test_prefetcher_close_stops_the_worker_early():
  calls = []

  def produce(i):
    calls.append(i)
    time.sleep(0.01)
    return i

  items = host.Prefetcher(produce, range(1000), depth=2)
  assert next(items) == 0
  items.close()
  assert len(calls) <= 4  # the running item and at most `depth` more, not the whole range
  assert list(items) == []
  with pytest.raises(ValueError, match='depth'):
    host.Prefetcher(produce, range(3), depth=-1)


def test_every_round_has_the_same_shapes_and_shardings_so_a_step_compiles_once():
  traces = []

  @jax.jit
  def step(inputs):
    traces.append(1)
    return jnp.sum(inputs.data.x) + jnp.sum(inputs.participation)

  load = host.make_cohort_loader(_data(num_clients=10), 4, jax.random.key(0), dropout_rate=0.2)
  for r in range(3):
    step(load(r))
  assert len(traces) == 1


def test_host_poisson_cohort_equals_the_device_path(tmp_path):
  host.save_federated(_data(num_clients=11), str(tmp_path / 'fed'))
  data = host.load_federated(str(tmp_path / 'fed'))
  base_key, capacity = jax.random.key(6), sampling.cohort_capacity(11, 3, 'poisson')
  load = host.make_cohort_loader(data, 3, base_key, 0.2, sampling='poisson', capacity=capacity)
  device_data = FederatedData(*(jnp.asarray(a) for a in data))
  for r in (0, 4):
    sample_key, _ = jax.random.split(jax.random.fold_in(base_key, r))
    expected = sample_round(device_data, sample_key, 3, 0.2, sampling='poisson', capacity=capacity)
    got = load(r)
    assert got.client_ids.shape == (capacity,)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
