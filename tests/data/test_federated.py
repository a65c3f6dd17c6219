"""FederatedData: packing, unpacking, gathering, padding and masks against plain numpy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.data import federated as F


def _central(n=23, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 3, 2)).astype(np.float32), rng.integers(0, 5, n).astype(np.int32)


def _indices(n=23, sizes=(5, 0, 11, 7)):
  order = np.random.default_rng(1).permutation(n)
  return np.split(order, np.cumsum(sizes)[:-1])


def test_pack_places_rows_and_zero_pads():
  x, y = _central()
  idx = _indices()
  data = F.pack_clients(x, y, idx)
  chex.assert_shape(data.x, (4, 11, 3, 2))
  chex.assert_shape(data.y, (4, 11))
  np.testing.assert_array_equal(data.num_examples, [5, 0, 11, 7])
  assert data.num_examples.dtype == np.int32 and data.x.dtype == np.float32 and data.y.dtype == np.int32
  for k, rows in enumerate(idx):
    np.testing.assert_array_equal(data.x[k, :len(rows)], x[rows])
    np.testing.assert_array_equal(data.y[k, :len(rows)], y[rows])
    assert not data.x[k, len(rows):].any() and not data.y[k, len(rows):].any()
  assert (data.num_clients, data.max_examples, data.feature_shape) == (4, 11, (3, 2))


def test_pack_unpack_round_trip():
  x, y = _central()
  idx = _indices()
  ux, uy = F.unpack_clients(F.pack_clients(x, y, idx))
  order = np.concatenate(idx)
  np.testing.assert_array_equal(ux, x[order])
  np.testing.assert_array_equal(uy, y[order])


def test_pack_to_a_shared_max_examples():
  x, y = _central()
  data = F.pack_clients(x, y, _indices(), max_examples=16)
  chex.assert_shape(data.x, (4, 16, 3, 2))
  with pytest.raises(ValueError, match='max_examples=10'):
    F.pack_clients(x, y, _indices(), max_examples=10)


@pytest.mark.parametrize('bad', ['rows', 'empty'])
def test_pack_rejects_bad_input(bad):
  x, y = _central()
  with pytest.raises(ValueError):
    if bad == 'rows':
      F.pack_clients(x, y[:-1], _indices())
    else:
      F.pack_clients(x, y, [])


def test_mask_matches_counts():
  x, y = _central()
  data = F.pack_clients(x, y, _indices())
  expected = np.array([[j < n for j in range(11)] for n in [5, 0, 11, 7]])
  np.testing.assert_array_equal(data.mask(), expected)
  jax_mask = F.example_mask(jnp.asarray(data.num_examples), 11)
  assert isinstance(jax_mask, jax.Array)
  np.testing.assert_array_equal(jax_mask, expected)


def test_gather_numpy_and_jitted_jax_agree_with_indexing():
  x, y = _central()
  data = F.pack_clients(x, y, _indices())
  ids = np.array([2, 0, 2])
  host = F.gather_clients(data, ids)
  device = jax.jit(F.gather_clients)(F.to_device(data), jnp.asarray(ids))
  for got in (host, device):
    np.testing.assert_array_equal(got.x, data.x[ids])
    np.testing.assert_array_equal(got.y, data.y[ids])
    np.testing.assert_array_equal(got.num_examples, data.num_examples[ids])
  assert isinstance(device.x, jax.Array) and isinstance(host.x, np.ndarray)


@pytest.mark.parametrize('to_jax', [False, True])
def test_pad_clients_adds_empty_clients(to_jax):
  x, y = _central()
  data = F.pack_clients(x, y, _indices())
  if to_jax:
    data = F.to_device(data)
  padded = F.pad_clients(data, 8)
  chex.assert_shape(padded.x, (8, 11, 3, 2))
  np.testing.assert_array_equal(padded.num_examples, [5, 0, 11, 7, 0, 0, 0, 0])
  np.testing.assert_array_equal(padded.x[:4], data.x)
  assert not np.asarray(padded.x[4:]).any()
  assert F.pad_clients(data, 4) is data  # already a multiple: unchanged


def test_lazy_round_inputs_hold_the_same_cohort_and_materialize_to_the_gathered_one():
  from fedjax_lab.data import sampling
  x, y = _central()
  data = F.to_device(F.pack_clients(x, y, _indices()))
  byzantine = jnp.array([True, False, False, True])
  key = jax.random.key(3)
  gathered = sampling.sample_round(data, key, 3, 0.4, byzantine)
  lazy = sampling.sample_round(data, key, 3, 0.4, byzantine, gather=False)
  assert lazy.is_lazy and lazy.data is None and lazy.population is data and not gathered.is_lazy
  for a, b in zip(gathered[1:4], lazy[1:4]):
    np.testing.assert_array_equal(a, b)
  chex.assert_trees_all_equal(sampling.materialize(lazy), gathered)
  assert sampling.materialize(gathered) is gathered
  np.testing.assert_array_equal(sampling.cohort_num_examples(lazy), gathered.data.num_examples)
  # One client's rows by id, and a chunk's under vmap, equal the gathered cohort's rows.
  one = sampling.client_rows(data, lazy.client_ids[1])
  chex.assert_trees_all_equal(one, jax.tree.map(lambda a: a[1], gathered.data))
  chex.assert_trees_all_equal(jax.vmap(lambda i: sampling.client_rows(data, i))(lazy.client_ids), gathered.data)
  with pytest.raises(ValueError, match='neither data nor population'):
    sampling.materialize(lazy._replace(population=None))
