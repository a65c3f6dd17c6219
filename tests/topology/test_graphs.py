"""Graph builders: structure (degrees, symmetry, components) and clear errors on bad input."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from fedjax_lab.topology import graphs


def _check_undirected(adjacency):
  assert adjacency.dtype == bool
  np.testing.assert_array_equal(adjacency, adjacency.T)
  assert not adjacency.diagonal().any()


@pytest.mark.parametrize('name,n,kwargs,degrees', [
    ('ring', 7, {}, [2] * 7),
    ('path', 5, {}, [1, 2, 2, 2, 1]),
    ('star', 6, {}, [5, 1, 1, 1, 1, 1]),
    ('torus', 16, {}, [4] * 16),
    ('complete', 5, {}, [4] * 5),
    ('hypercube', 16, {}, [4] * 16),
    ('exponential', 16, {}, [7] * 16),  # +-1, +-2, +-4 and +8 (= -8)
    ('exponential', 10, {'max_power': 1}, [4] * 10),
    ('exponential', 9, {'max_power': 0}, [2] * 9),  # the ring
    ('random_regular', 20, {'degree': 3, 'seed': 1}, [3] * 20),
    ('disconnected', 8, {}, [2] * 8),
])
def test_degrees(name, n, kwargs, degrees):
  adjacency = graphs.make_graph(name, n, **kwargs)
  _check_undirected(adjacency)
  np.testing.assert_array_equal(adjacency.sum(axis=1), degrees)


def test_torus_neighbours_are_grid_neighbours():
  k = 4
  adjacency = graphs.torus(k * k)
  for i in range(k * k):
    r, c = divmod(i, k)
    expected = {((r + 1) % k) * k + c, ((r - 1) % k) * k + c, r * k + (c + 1) % k, r * k + (c - 1) % k}
    assert set(np.flatnonzero(adjacency[i])) == expected


def test_hypercube_links_differ_in_one_bit():
  adjacency = graphs.hypercube(32)
  rows, cols = np.nonzero(adjacency)
  assert all(bin(int(r) ^ int(c)).count('1') == 1 for r, c in zip(rows, cols))


def test_random_graphs_are_seeded():
  np.testing.assert_array_equal(graphs.erdos_renyi(30, 0.2, seed=3), graphs.erdos_renyi(30, 0.2, seed=3))
  assert not np.array_equal(graphs.erdos_renyi(30, 0.2, seed=3), graphs.erdos_renyi(30, 0.2, seed=4))
  np.testing.assert_array_equal(graphs.random_regular(30, 4, seed=5), graphs.random_regular(30, 4, seed=5))
  np.testing.assert_array_equal(graphs.erdos_renyi(6, 1.0), graphs.complete(6))
  _check_undirected(graphs.erdos_renyi(30, 0.2, seed=3))


def test_erdos_renyi_edge_density():
  adjacency = graphs.erdos_renyi(200, 0.1, seed=0)
  density = adjacency.sum() / (200 * 199)
  assert abs(density - 0.1) < 0.01  # 19,900 pairs: std of the density ~ 0.002


@pytest.mark.parametrize('seed', range(4))
def test_components_match_scipy(seed):
  adjacency = graphs.erdos_renyi(40, 0.04, seed=seed)
  count, labels = scipy.sparse.csgraph.connected_components(scipy.sparse.csr_matrix(adjacency), directed=False)
  ours = graphs.connected_components(adjacency)
  assert ours.max() + 1 == count
  # Same partition: two nodes share a label in ours iff they do in scipy's.
  np.testing.assert_array_equal(ours[:, None] == ours[None, :], labels[:, None] == labels[None, :])


def test_disconnected_has_two_halves():
  labels = graphs.connected_components(graphs.disconnected(9))
  np.testing.assert_array_equal(labels, [0] * 4 + [1] * 5)
  assert graphs.is_connected(graphs.ring(9))
  assert not graphs.is_connected(graphs.disconnected(9))


@pytest.mark.parametrize('name,n,kwargs,match', [
    ('ring', 1, {}, 'num_nodes=1 must be >= 3'),
    ('ring', 2, {}, 'num_nodes=2 must be >= 3'),
    ('path', 1, {}, 'num_nodes=1 must be >= 2'),
    ('complete', 0, {}, 'num_nodes=0 must be >= 2'),
    ('star', 2, {}, 'must be >= 3'),
    ('torus', 10, {}, 'perfect square'),
    ('torus', 4, {}, 'must be >= 9'),
    ('hypercube', 12, {}, 'power of two'),
    ('exponential', 16, {'max_power': 4}, r'max_power=4 must be an integer in \[0, 3\]'),
    ('exponential', 16, {'max_power': -1}, 'max_power=-1'),
    ('exponential', 16, {'max_power': 1.5}, 'max_power=1.5'),
    ('exponential', 1, {}, 'num_nodes=1'),
    ('erdos_renyi', 10, {'edge_probability': 0.0}, 'edge_probability=0.0'),
    ('random_regular', 7, {'degree': 3}, 'must be even'),
    ('random_regular', 7, {'degree': 7}, r'degree=7 must be an integer in \[1, 6\]'),
    ('disconnected', 3, {}, 'num_nodes=3 must be >= 4'),
    ('ring', 2.5, {}, 'must be an integer'),
])
def test_bad_input_raises(name, n, kwargs, match):
  with pytest.raises(ValueError, match=match):
    graphs.make_graph(name, n, **kwargs)


def test_unknown_topology_raises():
  with pytest.raises(ValueError, match="Unknown topology 'mesh'"):
    graphs.make_graph('mesh', 8)
