"""Mixing matrices: gossip weights on a graph, their checks, and their spectral quantities.

A mixing matrix W [N, N] says how node i averages its neighbours: x_i <- sum_j W_ij x_j. Gossip
preserves the node average and drives the nodes to consensus when W is non-negative and doubly
stochastic (rows and columns sum to 1) and the graph is connected; the speed is set by

  rho(W) = || W - 11^T / N ||_2,

the largest |eigenvalue| of W - 11^T/N when W is symmetric: ||X_k - mean|| <= rho^k ||X_0 - mean||.
The spectral gap is 1 - |lambda_2(W)| (= 1 - rho for symmetric W); a disconnected graph has rho = 1.

A `Topology` bundles the graph, its mixing matrices (a stack [T, N, N]: T = 1 for a static graph,
the period of a time-varying schedule otherwise) and its name; `catalog.make_topology` builds one
by name.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fedjax_lab.topology import graphs as graphs_lib

WEIGHTS = ('metropolis_hastings', 'uniform')


class Topology(NamedTuple):
  """A communication graph with its gossip weights.

  Attributes:
    name: e.g. 'ring', 'torus', 'one_peer_exponential'.
    adjacency: [N, N] bool, the union over one period of the links used.
    mixing: [T, N, N] float64 mixing matrices, applied in turn (step t uses mixing[t % T]).
  """

  name: str
  adjacency: np.ndarray
  mixing: np.ndarray

  @property
  def num_nodes(self) -> int:
    return int(self.mixing.shape[-1])

  @property
  def period(self) -> int:
    return int(self.mixing.shape[0])

  @property
  def time_varying(self) -> bool:
    return self.period > 1

  @property
  def W(self) -> np.ndarray:  # pylint: disable=invalid-name
    """[N, N] mixing matrix of a static topology."""
    if self.time_varying:
      raise ValueError(f'{self.name} is time-varying (period {self.period}); use .mixing[t % period].')
    return self.mixing[0]

  @property
  def components(self) -> np.ndarray:
    """[N] int connected-component label of every node (over the union of one period)."""
    return graphs_lib.connected_components(self.adjacency)

  @property
  def connected(self) -> bool:
    return graphs_lib.is_connected(self.adjacency)

  @property
  def rho(self) -> float:
    """Per-step consensus rate: rho(W), or rho(W_{T-1} ... W_0)^(1/T) for a schedule."""
    return consensus_rate(self.mixing)

  @property
  def spectral_gap(self) -> float:
    """1 - |lambda_2| of W (of the product over one period for a schedule)."""
    return spectral_gap(period_product(self.mixing))


# ---------------------------------------------------------------------------------------------
# Weights.


def metropolis_hastings(adjacency: np.ndarray) -> np.ndarray:
  """W_ij = 1 / (1 + max(d_i, d_j)) on every edge, W_ii = 1 - sum_j W_ij.

  Args:
    adjacency: [N, N] bool, symmetric.

  Returns:
    [N, N] float64, symmetric and doubly stochastic for any undirected graph.
  """
  adjacency = _check_adjacency(adjacency)
  degree = adjacency.sum(axis=1)
  weights = np.where(adjacency, 1.0 / (1.0 + np.maximum(degree[:, None], degree[None, :])), 0.0)
  np.fill_diagonal(weights, 1.0 - weights.sum(axis=1))
  return weights


def uniform(adjacency: np.ndarray, self_weight: float | None = None) -> np.ndarray:
  """Equal weights on every edge: W_ij = 1 / (1 + d_max), W_ii = 1 - d_i / (1 + d_max).

  On a d-regular graph every node gives 1/(d+1) to itself and to each neighbour (ring 1/3, torus
  1/5, complete 1/N); `self_weight` s instead gives (1 - s)/d to each neighbour (regular graphs).

  Args:
    adjacency: [N, N] bool, symmetric.
    self_weight: optional W_ii in [0, 1) for a regular graph.

  Returns:
    [N, N] float64, symmetric and doubly stochastic.
  """
  adjacency = _check_adjacency(adjacency)
  degree = adjacency.sum(axis=1)
  max_degree = int(degree.max())
  if max_degree == 0:
    return np.eye(adjacency.shape[0])
  if self_weight is None:
    edge_weight = 1.0 / (1.0 + max_degree)
  else:
    if not 0.0 <= self_weight < 1.0:
      raise ValueError(f'self_weight={self_weight} must be in [0, 1).')
    if degree.min() != max_degree:
      raise ValueError('self_weight needs a regular graph (every node the same degree); '
                       f'degrees here range over [{degree.min()}, {max_degree}].')
    edge_weight = (1.0 - self_weight) / max_degree
  weights = np.where(adjacency, edge_weight, 0.0)
  np.fill_diagonal(weights, 1.0 - weights.sum(axis=1))
  return weights


def lazy(mixing: np.ndarray) -> np.ndarray:
  """(I + W) / 2: half of every step stays home; eigenvalues move into [0, 1] (no oscillation)."""
  mixing = np.asarray(mixing, np.float64)
  return 0.5 * (np.eye(mixing.shape[-1]) + mixing)


def _check_adjacency(adjacency: np.ndarray) -> np.ndarray:
  adjacency = np.asarray(adjacency, bool)
  if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
    raise ValueError(f'adjacency must be a square [N, N] matrix, got shape {adjacency.shape}.')
  if not np.array_equal(adjacency, adjacency.T):
    raise ValueError('adjacency must be symmetric (an undirected graph).')
  adjacency = adjacency.copy()
  np.fill_diagonal(adjacency, False)
  return adjacency


# ---------------------------------------------------------------------------------------------
# Checks and spectral quantities.


def check_mixing_matrix(mixing: np.ndarray, symmetric: bool = True, atol: float = 1e-8) -> np.ndarray:
  """Validates a hand-given mixing matrix and returns it as float64.

  Args:
    mixing: [N, N] (or a stack [T, N, N]).
    symmetric: also require W = W^T (set False for directed schedules such as one-peer exponential).
    atol: tolerance of the sums and of symmetry.

  Returns:
    The matrix, float64, same shape.

  Raises:
    ValueError: not square, N < 2, not finite, a negative entry, a row or column not summing to 1,
      or (with symmetric=True) not symmetric; the message names the offending row/column.
  """
  mixing = np.asarray(mixing, np.float64)
  if mixing.ndim not in (2, 3) or mixing.shape[-1] != mixing.shape[-2]:
    raise ValueError(f'mixing matrix must be square [N, N] (or [T, N, N]), got shape {mixing.shape}.')
  if mixing.shape[-1] < 2:
    raise ValueError(f'mixing matrix has N={mixing.shape[-1]} nodes; decentralized training needs N >= 2.')
  if not np.all(np.isfinite(mixing)):
    raise ValueError('mixing matrix has non-finite entries.')
  if mixing.min() < -atol:
    i = np.unravel_index(np.argmin(mixing), mixing.shape)
    raise ValueError(f'mixing matrix has a negative entry {mixing[i]:.3g} at {tuple(int(a) for a in i)}; '
                     'weights must be >= 0.')
  for axis, what in ((-1, 'row'), (-2, 'column')):
    sums = mixing.sum(axis=axis)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
      index = np.argwhere(bad)[0]
      raise ValueError(f'mixing matrix is not doubly stochastic: {what} {int(index[-1])} sums to '
                       f'{sums[tuple(index)]:.6g}, not 1.')
  if symmetric and not np.allclose(mixing, np.swapaxes(mixing, -1, -2), atol=atol, rtol=0.0):
    raise ValueError('mixing matrix is not symmetric; pass symmetric=False for a directed schedule.')
  return mixing


def rho(mixing: np.ndarray) -> float:
  """|| W - 11^T/N ||_2 (= largest |eigenvalue| of W - 11^T/N for symmetric W)."""
  mixing = np.asarray(mixing, np.float64)
  deviation = mixing - 1.0 / mixing.shape[-1]
  if np.allclose(deviation, deviation.T, atol=1e-12):
    return float(np.max(np.abs(np.linalg.eigvalsh(deviation))))
  return float(np.linalg.norm(deviation, ord=2))


def spectral_gap(mixing: np.ndarray) -> float:
  """1 - |lambda_2(W)|, |lambda_2| the second largest eigenvalue modulus (0 when disconnected)."""
  mixing = np.asarray(mixing, np.float64)
  if np.allclose(mixing, mixing.T, atol=1e-12):
    moduli = np.sort(np.abs(np.linalg.eigvalsh(mixing)))[::-1]
  else:
    moduli = np.sort(np.abs(np.linalg.eigvals(mixing)))[::-1]
  return float(1.0 - moduli[1])


def period_product(mixing: np.ndarray) -> np.ndarray:
  """W_{T-1} ... W_1 W_0 of a stack [T, N, N] (what one period of gossip applies); [N, N]."""
  mixing = np.asarray(mixing, np.float64)
  if mixing.ndim == 2:
    return mixing
  product = np.eye(mixing.shape[-1])
  for matrix in mixing:
    product = matrix @ product
  return product


def consensus_rate(mixing: np.ndarray) -> float:
  """Per-step contraction of ||X - mean||: rho(W), or rho(period product)^(1/T) for [T, N, N]."""
  mixing = np.asarray(mixing, np.float64)
  if mixing.ndim == 2 or mixing.shape[0] == 1:
    return rho(mixing.reshape(mixing.shape[-2:]))
  return rho(period_product(mixing)) ** (1.0 / mixing.shape[0])


# ---------------------------------------------------------------------------------------------
# A Topology from a given matrix.


def from_mixing_matrix(mixing: np.ndarray, name: str = 'custom', symmetric: bool = True,
                       atol: float = 1e-8) -> Topology:
  """A Topology from a hand-given W [N, N] (or a schedule [T, N, N]), validated first.

  Raises:
    ValueError: W is not a valid mixing matrix (see `check_mixing_matrix`).
  """
  mixing = check_mixing_matrix(mixing, symmetric=symmetric, atol=atol)
  stack = mixing if mixing.ndim == 3 else mixing[None]
  links = (stack > 0).any(axis=0)
  adjacency = links | links.T
  np.fill_diagonal(adjacency, False)
  return Topology(name, adjacency, stack)
