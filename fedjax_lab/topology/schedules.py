"""Time-varying topologies: a different sparse mixing matrix at every step, applied in turn.

  random_matchings      each step every node averages with one random partner (a random perfect
                        matching; with odd N one node sits out). `period` matchings are drawn once
                        from `seed` and cycled, so the schedule is a fixed array under jit.
  one_peer_exponential  at step t node i averages with node i + 2^(t mod tau), tau = ceil(log2 N)
                        (Ying et al. 2021, "Exponential graph is provably efficient for
                        decentralized deep training"). Each W_t = (I + S^(2^t)) / 2 is doubly
                        stochastic but not symmetric; on N = 2^tau nodes the product of tau
                        consecutive steps is exactly 11^T / N: exact averaging with one peer a step.
"""

from __future__ import annotations

import numpy as np

from fedjax_lab.topology import mixing as mixing_lib


def _check(name: str, num_nodes: int) -> int:
  if isinstance(num_nodes, bool) or int(num_nodes) != num_nodes or num_nodes < 2:
    raise ValueError(f'{name}: num_nodes={num_nodes!r} must be an integer >= 2.')
  return int(num_nodes)


def matching_matrix(partner: np.ndarray) -> np.ndarray:
  """W = (I + P) / 2 for a matching given as partner[i] (partner[i] == i: node i sits out).

  Args:
    partner: [N] int, an involution (partner[partner[i]] == i).

  Returns:
    [N, N] float64, symmetric, doubly stochastic.
  """
  num_nodes = partner.shape[0]
  permutation = np.zeros((num_nodes, num_nodes))
  permutation[np.arange(num_nodes), partner] = 1.0
  return 0.5 * (np.eye(num_nodes) + permutation)


def random_matchings(num_nodes: int, period: int = 16, seed: int = 0) -> mixing_lib.Topology:
  """A cycle of `period` random perfect matchings, each applied as pairwise averaging.

  Args:
    num_nodes: N >= 2.
    period: T >= 1 matchings drawn from `seed`, applied in turn.
    seed: random seed.

  Returns:
    Topology with mixing [T, N, N].
  """
  num_nodes = _check('random_matchings', num_nodes)
  if int(period) != period or period < 1:
    raise ValueError(f'random_matchings: period={period!r} must be an integer >= 1.')
  rng = np.random.default_rng(seed)
  stack = []
  for _ in range(int(period)):
    order = rng.permutation(num_nodes)
    partner = np.arange(num_nodes)
    pairs = order[: num_nodes - num_nodes % 2].reshape(-1, 2)
    partner[pairs[:, 0]] = pairs[:, 1]
    partner[pairs[:, 1]] = pairs[:, 0]
    stack.append(matching_matrix(partner))
  stack = np.stack(stack)
  adjacency = (stack > 0).any(axis=0)
  np.fill_diagonal(adjacency, False)
  return mixing_lib.Topology('random_matchings', adjacency, stack)


def one_peer_exponential(num_nodes: int) -> mixing_lib.Topology:
  """Ying et al.'s one-peer exponential schedule: step t averages node i with i + 2^(t mod tau).

  Args:
    num_nodes: N >= 2; tau = ceil(log2 N) steps per period.

  Returns:
    Topology with mixing [tau, N, N]; W_t[i, i] = W_t[i, (i + 2^t) mod N] = 1/2.
  """
  num_nodes = _check('one_peer_exponential', num_nodes)
  tau = max(1, (num_nodes - 1).bit_length())
  nodes = np.arange(num_nodes)
  stack = np.zeros((tau, num_nodes, num_nodes))
  for t in range(tau):
    stack[t, nodes, nodes] += 0.5
    stack[t, nodes, (nodes + (1 << t)) % num_nodes] += 0.5
  links = (stack > 0).any(axis=0)
  adjacency = links | links.T
  np.fill_diagonal(adjacency, False)
  return mixing_lib.Topology('one_peer_exponential', adjacency, stack)


SCHEDULES = {
    'random_matchings': random_matchings,
    'one_peer_exponential': one_peer_exponential,
}
