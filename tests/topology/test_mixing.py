"""Mixing matrices: validity, closed-form spectra, schedules, and rejection of bad hand-given W."""

import numpy as np
import pytest

from fedjax_lab import topology as topo_lib
from fedjax_lab.topology import mixing, schedules

ALL = [
    ('ring', 8, {}), ('path', 6, {}), ('star', 7, {}), ('torus', 16, {}), ('complete', 5, {}),
    ('hypercube', 8, {}), ('exponential', 12, {}), ('erdos_renyi', 12, {'edge_probability': 0.4}),
    ('random_regular', 12, {'degree': 3}), ('disconnected', 8, {}),
    ('random_matchings', 9, {'period': 4}), ('one_peer_exponential', 8, {}),
]


def _eig_rho(w):
  """Plain-numpy reference: largest |eigenvalue| of W - 11^T/n."""
  n = w.shape[0]
  return np.max(np.abs(np.linalg.eigvals(w - np.ones((n, n)) / n)))


@pytest.mark.parametrize('name,n,kwargs', ALL)
@pytest.mark.parametrize('weights', ['metropolis_hastings', 'uniform'])
def test_every_topology_is_a_valid_mixing_matrix(name, n, kwargs, weights):
  is_schedule = name in schedules.SCHEDULES
  topology = topo_lib.make_topology(name, n, weights=None if is_schedule else weights, **kwargs)
  assert topology.mixing.shape[1:] == (n, n)
  # Static graphs and matchings are symmetric; one-peer exponential is directed.
  mixing.check_mixing_matrix(topology.mixing, symmetric=name != 'one_peer_exponential')
  # Weights sit only on links of the graph (and the diagonal).
  links = (topology.mixing > 0).any(axis=0)
  np.fill_diagonal(links, False)
  assert not (links & ~topology.adjacency).any()


@pytest.mark.parametrize('n', [3, 4, 5, 8, 16, 31])
def test_ring_one_third_closed_form(n):
  topology = topo_lib.make_topology('ring', n, weights='uniform')
  off = topology.W[np.arange(n), (np.arange(n) + 1) % n]
  np.testing.assert_allclose(off, 1 / 3)
  expected = abs(1 / 3 + 2 / 3 * np.cos(2 * np.pi / n))
  np.testing.assert_allclose(topology.rho, expected, atol=1e-12)
  np.testing.assert_allclose(topology.rho, _eig_rho(topology.W), atol=1e-12)
  np.testing.assert_allclose(topology.spectral_gap, 1 - expected, atol=1e-12)


@pytest.mark.parametrize('k', [3, 4, 5, 8])
def test_torus_one_fifth_closed_form(k):
  topology = topo_lib.make_topology('torus', k * k, weights='uniform')
  np.testing.assert_allclose(np.diag(topology.W), 1 / 5)
  np.testing.assert_allclose(topology.rho, (3 + 2 * np.cos(2 * np.pi / k)) / 5, atol=1e-12)


@pytest.mark.parametrize('weights', ['uniform', 'metropolis_hastings'])
def test_complete_averages_in_one_step(weights):
  topology = topo_lib.make_topology('complete', 6, weights=weights)
  np.testing.assert_allclose(topology.W, np.full((6, 6), 1 / 6), atol=1e-15)
  assert topology.rho < 1e-12
  np.testing.assert_allclose(topology.spectral_gap, 1.0, atol=1e-12)


@pytest.mark.parametrize('n', [3, 5, 10, 33])
def test_star_metropolis_hastings_closed_form(n):
  topology = topo_lib.make_topology('star', n, weights='metropolis_hastings')
  np.testing.assert_allclose(topology.W[0], 1 / n)
  np.testing.assert_allclose(topology.rho, 1 - 1 / n, atol=1e-12)


@pytest.mark.parametrize('d', [2, 3, 5])
def test_hypercube_uniform_closed_form(d):
  # Eigenvalues (1 + d - 2j) / (d + 1), j = 0..d: rho = (d - 1) / (d + 1).
  topology = topo_lib.make_topology('hypercube', 2 ** d, weights='uniform')
  np.testing.assert_allclose(topology.rho, (d - 1) / (d + 1), atol=1e-12)


def test_metropolis_hastings_matches_loop_reference():
  adjacency = topo_lib.erdos_renyi(15, 0.3, seed=2)
  degree = adjacency.sum(axis=1)
  expected = np.zeros((15, 15))
  for i in range(15):
    for j in range(15):
      if adjacency[i, j]:
        expected[i, j] = 1 / (1 + max(degree[i], degree[j]))
    expected[i, i] = 1 - expected[i].sum()
  np.testing.assert_allclose(topo_lib.metropolis_hastings(adjacency), expected, atol=1e-15)


def test_spectral_quantities_match_numpy():
  topology = topo_lib.make_topology('random_regular', 20, degree=3, seed=7)
  w = topology.W
  moduli = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
  np.testing.assert_allclose(topology.spectral_gap, 1 - moduli[1], atol=1e-10)
  np.testing.assert_allclose(topology.rho, _eig_rho(w), atol=1e-10)
  np.testing.assert_allclose(topology.spectral_gap, 1 - topology.rho, atol=1e-10)


@pytest.mark.parametrize('tau', [1, 2, 3, 4, 5])
def test_one_peer_exponential_is_exact_after_tau_steps(tau):
  n = 2 ** tau
  topology = topo_lib.make_topology('one_peer_exponential', n)
  assert topology.period == tau
  exact = np.full((n, n), 1.0 / n)
  # Any tau consecutive steps, starting anywhere in the cycle, average exactly (not just closely).
  for start in range(tau):
    product = mixing.period_product(np.roll(topology.mixing, -start, axis=0))
    assert np.array_equal(product, exact)
  assert topology.rho == 0.0
  # One step short of a period it is not yet the average.
  if tau > 1:
    assert not np.allclose(mixing.period_product(topology.mixing[:-1]), exact)


def test_one_peer_exponential_on_other_sizes_contracts_but_is_not_exact():
  topology = topo_lib.make_topology('one_peer_exponential', 12)
  assert 0 < topology.rho < 1
  assert topology.connected


def test_random_matchings_pair_every_node():
  topology = topo_lib.make_topology('random_matchings', 10, period=5, seed=3)
  for w in topology.mixing:
    assert set(np.unique(w)) <= {0.0, 0.5}
    np.testing.assert_array_equal((w > 0).sum(axis=1), 2)  # itself and one partner
  again = topo_lib.make_topology('random_matchings', 10, period=5, seed=3)
  np.testing.assert_array_equal(topology.mixing, again.mixing)
  assert 0 < topology.rho < 1


def test_disconnected_rho_is_one():
  topology = topo_lib.make_topology('disconnected', 10)
  assert not topology.connected
  np.testing.assert_allclose(topology.rho, 1.0, atol=1e-12)
  np.testing.assert_allclose(topology.spectral_gap, 0.0, atol=1e-12)


def test_lazy_moves_eigenvalues_to_unit_interval():
  topology = topo_lib.make_topology('ring', 8, weights='uniform', lazy=True)
  assert topology.name == 'lazy_ring'
  eigenvalues = np.linalg.eigvalsh(topology.W)
  assert eigenvalues.min() >= -1e-12
  np.testing.assert_allclose(topology.rho, (1 + 1 / 3 + 2 / 3 * np.cos(2 * np.pi / 8)) / 2, atol=1e-12)


def test_uniform_self_weight():
  w = topo_lib.uniform(topo_lib.ring(6), self_weight=0.5)
  np.testing.assert_allclose(np.diag(w), 0.5)
  np.testing.assert_allclose(w[0, 1], 0.25)
  with pytest.raises(ValueError, match='regular graph'):
    topo_lib.uniform(topo_lib.star(5), self_weight=0.5)


def test_from_mixing_matrix_accepts_a_valid_matrix():
  w = np.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.25, 0.75]])
  topology = topo_lib.from_mixing_matrix(w)
  np.testing.assert_array_equal(topology.adjacency, [[False, True, False], [True, False, True],
                                                     [False, True, False]])
  assert topology.connected


@pytest.mark.parametrize('w,match', [
    (np.array([[0.6, 0.5], [0.4, 0.5]]), 'not doubly stochastic: row 0 sums to 1.1'),
    (np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]), 'column 0 sums to 1.5'),
    (np.array([[1.5, -0.5], [-0.5, 1.5]]), 'negative entry'),
    (np.ones((2, 3)) / 3, 'square'),
    (np.ones((1, 1)), 'N >= 2'),
    (np.array([[np.nan, 1.0], [1.0, 0.0]]), 'non-finite'),
    (np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), 'not symmetric'),
])
def test_bad_hand_given_matrix_raises(w, match):
  with pytest.raises(ValueError, match=match):
    topo_lib.from_mixing_matrix(w)


def test_directed_matrix_allowed_when_asked():
  cycle = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
  assert topo_lib.from_mixing_matrix(cycle, symmetric=False).num_nodes == 3


@pytest.mark.parametrize('kwargs,match', [
    ({'name': 'ring', 'num_nodes': 8, 'weights': 'max_degree'}, "Unknown weights='max_degree'"),
    ({'name': 'one_peer_exponential', 'num_nodes': 8, 'weights': 'uniform'}, 'fixed pairwise weights'),
    ({'name': 'random_matchings', 'num_nodes': 8, 'period': 0}, 'period=0'),
    ({'name': 'one_peer_exponential', 'num_nodes': 1}, 'num_nodes=1'),
    ({'name': 'hexagon', 'num_nodes': 8}, 'Unknown topology'),
    ({'name': 'ring', 'num_nodes': 8, 'self_weight': 0.5}, "self_weight only applies to weights='uniform'"),
])
def test_make_topology_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    topo_lib.make_topology(**kwargs)


def test_static_w_of_a_schedule_raises():
  with pytest.raises(ValueError, match='time-varying'):
    _ = topo_lib.make_topology('one_peer_exponential', 8).W
