"""Communication graphs of decentralized training, as symmetric boolean adjacency matrices.

Every builder returns `adjacency: np.ndarray [N, N] bool`, symmetric, with a False diagonal (self
loops are added by the mixing weights, not by the graph). Node i of a 2-D torus sits at row i // k,
column i % k. Random graphs are a deterministic function of `seed` (`np.random.default_rng`).

Builders check their arguments and raise ValueError naming the argument and its allowed range, so
a bad config fails before anything is compiled.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np


def _check_num_nodes(name: str, num_nodes: int, minimum: int = 2) -> int:
  if isinstance(num_nodes, bool) or int(num_nodes) != num_nodes:
    raise ValueError(f'{name}: num_nodes={num_nodes!r} must be an integer >= {minimum}.')
  num_nodes = int(num_nodes)
  if num_nodes < minimum:
    raise ValueError(f'{name}: num_nodes={num_nodes} must be >= {minimum}.')
  return num_nodes


def _from_edges(num_nodes: int, rows, cols) -> np.ndarray:
  adjacency = np.zeros((num_nodes, num_nodes), bool)
  adjacency[rows, cols] = True
  adjacency[cols, rows] = True
  np.fill_diagonal(adjacency, False)
  return adjacency


def circulant(num_nodes: int, offsets) -> np.ndarray:
  """Node i links to i +- s (mod N) for every s in `offsets`: [N, N] bool."""
  nodes = np.arange(num_nodes)
  rows = np.concatenate([nodes for _ in offsets]) if len(offsets) else np.zeros(0, int)
  cols = np.concatenate([(nodes + s) % num_nodes for s in offsets]) if len(offsets) else np.zeros(0, int)
  return _from_edges(num_nodes, rows, cols)


def ring(num_nodes: int) -> np.ndarray:
  """Cycle 0-1-...-(N-1)-0; every node has degree 2 (N >= 3)."""
  return circulant(_check_num_nodes('ring', num_nodes, 3), [1])


def path(num_nodes: int) -> np.ndarray:
  """Path 0-1-...-(N-1): the ring without its closing edge."""
  num_nodes = _check_num_nodes('path', num_nodes)
  nodes = np.arange(num_nodes - 1)
  return _from_edges(num_nodes, nodes, nodes + 1)


def star(num_nodes: int) -> np.ndarray:
  """Node 0 (the hub) links to every other node; leaves link only to the hub (N >= 3)."""
  num_nodes = _check_num_nodes('star', num_nodes, 3)
  leaves = np.arange(1, num_nodes)
  return _from_edges(num_nodes, np.zeros_like(leaves), leaves)


def torus_side(num_nodes: int) -> int:
  """k with k * k == num_nodes and k >= 3, else ValueError."""
  num_nodes = _check_num_nodes('torus', num_nodes, 9)
  side = math.isqrt(num_nodes)
  if side * side != num_nodes:
    raise ValueError(f'torus: num_nodes={num_nodes} must be a perfect square k*k (k >= 3), e.g. '
                     f'{side * side} or {(side + 1) ** 2}.')
  return side


def torus(num_nodes: int) -> np.ndarray:
  """k x k 2-D torus (N = k^2, k >= 3): node (r, c) links to (r+-1, c) and (r, c+-1) mod k."""
  side = torus_side(num_nodes)
  r, c = np.divmod(np.arange(num_nodes), side)
  down = ((r + 1) % side) * side + c
  right = r * side + (c + 1) % side
  nodes = np.arange(num_nodes)
  return _from_edges(num_nodes, np.concatenate([nodes, nodes]), np.concatenate([down, right]))


def complete(num_nodes: int) -> np.ndarray:
  """Every pair of nodes is linked."""
  num_nodes = _check_num_nodes('complete', num_nodes)
  return ~np.eye(num_nodes, dtype=bool)


def hypercube(num_nodes: int) -> np.ndarray:
  """d-dimensional hypercube (N = 2^d): i links to i XOR 2^b for every bit b."""
  num_nodes = _check_num_nodes('hypercube', num_nodes)
  dim = num_nodes.bit_length() - 1
  if 1 << dim != num_nodes:
    raise ValueError(f'hypercube: num_nodes={num_nodes} must be a power of two (2^d, d >= 1).')
  nodes = np.arange(num_nodes)
  cols = np.concatenate([nodes ^ (1 << b) for b in range(dim)])
  return _from_edges(num_nodes, np.tile(nodes, dim), cols)


def max_exponent(num_nodes: int) -> int:
  """Largest k with 2^k <= N - 1: the longest hop of the exponential graph."""
  return (num_nodes - 1).bit_length() - 1


def exponential(num_nodes: int, max_power: int | None = None) -> np.ndarray:
  """Undirected exponential graph: i links to i +- 2^k (mod N) for k = 0..max_power.

  Args:
    num_nodes: N >= 2.
    max_power: longest hop exponent, 0 <= max_power <= floor(log2(N - 1)) (default: the largest,
      so the degree grows like 2 log2 N). max_power=0 is the ring.

  Returns:
    [N, N] bool adjacency.
  """
  num_nodes = _check_num_nodes('exponential', num_nodes)
  largest = max_exponent(num_nodes)
  if max_power is None:
    max_power = largest
  if int(max_power) != max_power or not 0 <= max_power <= largest:
    raise ValueError(f'exponential: max_power={max_power!r} must be an integer in [0, {largest}] for '
                     f'num_nodes={num_nodes} (hops 2^k must stay below N).')
  return circulant(num_nodes, [1 << k for k in range(int(max_power) + 1)])


def erdos_renyi(num_nodes: int, edge_probability: float, seed: int = 0) -> np.ndarray:
  """G(N, p): every pair linked independently with probability p (may be disconnected)."""
  num_nodes = _check_num_nodes('erdos_renyi', num_nodes)
  if not 0.0 < edge_probability <= 1.0:
    raise ValueError(f'erdos_renyi: edge_probability={edge_probability} must be in (0, 1].')
  rng = np.random.default_rng(seed)
  upper = np.triu(rng.random((num_nodes, num_nodes)) < edge_probability, k=1)
  return upper | upper.T


def random_regular(num_nodes: int, degree: int, seed: int = 0, max_tries: int = 100) -> np.ndarray:
  """A random simple d-regular graph (stub matching with restarts; seeded).

  Stubs are paired one at a time among the pairs that keep the graph simple; when no such pair is
  left the construction restarts (rare for d << N).

  Args:
    num_nodes: N >= 2.
    degree: d in [1, N - 1] with N * d even.
    seed: random seed.
    max_tries: restarts before giving up.

  Returns:
    [N, N] bool adjacency; every row has exactly `degree` True entries.
  """
  num_nodes = _check_num_nodes('random_regular', num_nodes)
  if int(degree) != degree or not 1 <= degree <= num_nodes - 1:
    raise ValueError(f'random_regular: degree={degree!r} must be an integer in [1, {num_nodes - 1}].')
  if (num_nodes * degree) % 2:
    raise ValueError(f'random_regular: num_nodes * degree = {num_nodes * degree} must be even.')
  if degree == num_nodes - 1:
    return complete(num_nodes)
  rng = np.random.default_rng(seed)
  for _ in range(max_tries):
    adjacency = np.zeros((num_nodes, num_nodes), bool)
    remaining = np.full(num_nodes, degree)
    ok = True
    while remaining.any():
      open_nodes = np.flatnonzero(remaining)
      i = rng.choice(open_nodes, p=remaining[open_nodes] / remaining[open_nodes].sum())
      candidates = open_nodes[(open_nodes != i) & ~adjacency[i, open_nodes]]
      if candidates.size == 0:
        ok = False
        break
      j = rng.choice(candidates, p=remaining[candidates] / remaining[candidates].sum())
      adjacency[i, j] = adjacency[j, i] = True
      remaining[i] -= 1
      remaining[j] -= 1
    if ok:
      return adjacency
  raise ValueError(f'random_regular: no simple {degree}-regular graph on {num_nodes} nodes found in '
                   f'{max_tries} tries; lower degree or change seed.')


def disconnected(num_nodes: int) -> np.ndarray:
  """Two components: nodes [0, N//2) and [N//2, N), each a cycle (an edge when it has two nodes)."""
  num_nodes = _check_num_nodes('disconnected', num_nodes, 4)
  half = num_nodes // 2
  adjacency = np.zeros((num_nodes, num_nodes), bool)
  for start, size in ((0, half), (half, num_nodes - half)):
    block = circulant(size, [1])
    adjacency[start:start + size, start:start + size] = block
  return adjacency


GRAPHS: dict[str, Callable[..., np.ndarray]] = {
    'ring': ring,
    'path': path,
    'star': star,
    'torus': torus,
    'complete': complete,
    'hypercube': hypercube,
    'exponential': exponential,
    'erdos_renyi': erdos_renyi,
    'random_regular': random_regular,
    'disconnected': disconnected,
}


def make_graph(name: str, num_nodes: int, **kwargs) -> np.ndarray:
  """Adjacency [N, N] bool of the graph `name` (see GRAPHS) with its keyword arguments."""
  if name not in GRAPHS:
    raise ValueError(f'Unknown topology {name!r} (config.topology.name); choose one of {sorted(GRAPHS)} '
                     "or a time-varying schedule ('random_matchings', 'one_peer_exponential').")
  return GRAPHS[name](num_nodes, **kwargs)


def connected_components(adjacency: np.ndarray) -> np.ndarray:
  """[N] int component label of every node (labels 0, 1, ... in order of the smallest node)."""
  adjacency = np.asarray(adjacency, bool)
  adjacency = adjacency | adjacency.T  # components of the undirected graph underneath
  num_nodes = adjacency.shape[0]
  labels = np.full(num_nodes, -1)
  label = 0
  for start in range(num_nodes):
    if labels[start] >= 0:
      continue
    frontier = np.zeros(num_nodes, bool)
    frontier[start] = True
    labels[start] = label
    while frontier.any():
      reached = adjacency[frontier].any(axis=0) & (labels < 0)
      labels[reached] = label
      frontier = reached
    label += 1
  return labels


def is_connected(adjacency: np.ndarray) -> bool:
  return bool(connected_components(adjacency).max() == 0)
