"""Gossip operators: dense, sparse and ppermute (8 fake CPU devices) all equal W @ x in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from fedjax_lab import topology as topo_lib
from fedjax_lab.clients.placement import client_mesh
from fedjax_lab.topology import gossip as gossip_lib
from fedjax_lab.topology import sharded

CASES = [
    ('ring', 16, {}), ('torus', 25, {}), ('star', 9, {}), ('exponential', 32, {}), ('hypercube', 16, {}),
    ('erdos_renyi', 20, {'edge_probability': 0.3}), ('disconnected', 10, {}),
    ('random_matchings', 12, {'period': 3}), ('one_peer_exponential', 16, {}),
]


def _tree(n, seed=0):
  rng = np.random.default_rng(seed)
  return {'w': jnp.asarray(rng.normal(size=(n, 3, 2)), jnp.float32),
          'b': jnp.asarray(rng.normal(size=(n,)), jnp.float32)}


def _reference(topology, x, step):
  w = topology.mixing[step % topology.period]
  return jax.tree.map(lambda leaf: np.einsum('ij,j...->i...', w, np.asarray(leaf, np.float64)), x)


def _assert_close(out, ref, atol=1e-6):
  for key in ref:
    np.testing.assert_allclose(np.asarray(out[key]), ref[key], rtol=0, atol=atol)


@pytest.mark.parametrize('name,n,kwargs', CASES)
@pytest.mark.parametrize('impl', ['dense', 'sparse'])
def test_dense_and_sparse_equal_numpy(name, n, kwargs, impl):
  topology = topo_lib.make_topology(name, n, **kwargs)
  gossip = topo_lib.make_gossip(topology, impl)
  assert gossip.impl == impl
  x = _tree(n)
  mix = jax.jit(gossip.mix)
  for step in range(4):
    _assert_close(mix(x, step), _reference(topology, x, step))


def test_sparse_equals_dense_on_a_large_ring():
  topology = topo_lib.make_topology('ring', 1024, weights='uniform')
  x = _tree(1024, seed=1)
  dense = jax.jit(topo_lib.dense_gossip(topology).mix)(x)
  sparse = jax.jit(topo_lib.sparse_gossip(topology).mix)(x)
  _assert_close(sparse, jax.tree.map(np.asarray, dense), atol=1e-6)


def test_neighbor_lists_rebuild_w():
  topology = topo_lib.make_topology('erdos_renyi', 15, edge_probability=0.3, seed=1)
  neighbors, weights = topo_lib.neighbor_lists(topology.mixing)
  assert neighbors.shape[2] == 1 + topology.adjacency.sum(axis=1).max()
  np.testing.assert_array_equal(neighbors[0, :, 0], np.arange(15))  # self first
  rebuilt = np.zeros((15, 15))
  np.add.at(rebuilt, (np.repeat(np.arange(15), neighbors.shape[2]), neighbors[0].ravel()), weights[0].ravel())
  np.testing.assert_allclose(rebuilt, topology.W, atol=1e-15)


@pytest.mark.parametrize('name,n,expected', [('ring', 16, 'dense'), ('ring', 1024, 'sparse'),
                                             ('exponential', 1024, 'sparse'), ('complete', 128, 'dense'),
                                             ('torus', 64, 'sparse')])
def test_auto_choice(name, n, expected):
  topology = topo_lib.make_topology(name, n)
  assert topo_lib.choose_impl(topology) == expected
  assert topo_lib.make_gossip(topology).impl == expected


def test_operands_as_runtime_arguments():
  topology = topo_lib.make_topology('one_peer_exponential', 8)
  gossip = topo_lib.make_gossip(topology, 'sparse', dtype=jnp.float32)
  x = _tree(8)
  out = jax.jit(gossip.apply)(gossip.operands, x, 2)
  _assert_close(out, _reference(topology, x, 2))


def test_step_is_traced_without_recompiling():
  topology = topo_lib.make_topology('one_peer_exponential', 8)
  traces = []

  def mix(x, step):
    traces.append(1)
    return topo_lib.make_gossip(topology, 'dense').mix(x, step)

  mix = jax.jit(mix)
  x = _tree(8)
  for step in range(5):
    mix(x, jnp.asarray(step))
  assert len(traces) == 1


def test_consensus_error_and_average():
  x = _tree(6)
  expected = sum(np.sum((np.asarray(v) - np.asarray(v).mean(0)) ** 2) for v in x.values()) / 6
  np.testing.assert_allclose(topo_lib.consensus_error(x), expected, rtol=1e-5)
  np.testing.assert_allclose(topo_lib.node_average(x)['b'], np.asarray(x['b']).mean(), rtol=1e-5)


def test_unknown_impl_raises():
  with pytest.raises(ValueError, match="Unknown gossip impl='gather'"):
    topo_lib.make_gossip(topo_lib.make_topology('ring', 8), 'gather')


# ---------------------------------------------------------------------------------------------
# ppermute inside shard_map, on 8 (or 4, 2) fake CPU devices.


@pytest.mark.parametrize('name,n,devices', [
    ('ring', 16, 8), ('ring', 64, 8), ('ring', 12, 4), ('torus', 64, 8), ('torus', 36, 4), ('torus', 144, 8),
    ('exponential', 32, 8), ('one_peer_exponential', 32, 8), ('one_peer_exponential', 24, 8),
])
def test_ppermute_equals_dense(name, n, devices):
  if jax.device_count() < devices:
    pytest.skip(f'needs {devices} devices')
  mesh = client_mesh(devices)
  topology = topo_lib.make_topology(name, n)
  gossip = topo_lib.make_gossip(topology, 'ppermute', mesh=mesh)
  dense = topo_lib.make_gossip(topology, 'dense')
  x = _tree(n, seed=2)
  mix = jax.jit(gossip.mix)
  for step in range(3):
    out = mix(x, step)
    _assert_close(out, jax.tree.map(np.asarray, dense.mix(x, step)))
    assert out['w'].sharding.spec == P('clients')


@pytest.mark.parametrize('shift', [0, 1, -1, 3, 5, 8, -9, 17, 40])
def test_sharded_roll_equals_roll(shift):
  mesh = client_mesh(8)
  n = 40
  x = jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2)
  roll = jax.shard_map(lambda block: sharded.sharded_roll(block, shift, n, 8), mesh=mesh,
                       in_specs=P('clients'), out_specs=P('clients'))
  np.testing.assert_array_equal(np.asarray(roll(x)), np.roll(np.asarray(x), -shift, axis=0))


def test_ppermute_bad_input_raises():
  mesh = client_mesh(8)
  with pytest.raises(ValueError, match='neither'):
    topo_lib.make_gossip(topo_lib.make_topology('star', 16), 'ppermute', mesh=mesh)
  with pytest.raises(ValueError, match='multiple of the 8 devices'):
    topo_lib.make_gossip(topo_lib.make_topology('ring', 12), 'ppermute', mesh=mesh)
  with pytest.raises(ValueError, match='needs a mesh'):
    topo_lib.make_gossip(topo_lib.make_topology('ring', 16), 'ppermute', mesh=None)
