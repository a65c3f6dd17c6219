"""Topologies by name: the graphs of `graphs.GRAPHS` with their mixing weights, and the
time-varying schedules of `schedules.SCHEDULES`.

It sits above `mixing` and `schedules` (schedules build on mixing), so the imports go one way.
"""

from __future__ import annotations

import numpy as np

from fedjax_lab.topology import graphs as graphs_lib
from fedjax_lab.topology import mixing as mixing_lib
from fedjax_lab.topology import schedules as schedules_lib


def _weights(adjacency: np.ndarray, weights: str, self_weight: float | None) -> np.ndarray:
  if weights == 'metropolis_hastings':
    if self_weight is not None:
      raise ValueError("self_weight only applies to weights='uniform'.")
    return mixing_lib.metropolis_hastings(adjacency)
  if weights == 'uniform':
    return mixing_lib.uniform(adjacency, self_weight)
  raise ValueError(f'Unknown weights={weights!r} (config.topology.weights); choose one of {mixing_lib.WEIGHTS}.')


def make_topology(
    name: str,
    num_nodes: int,
    weights: str | None = None,
    lazy: bool = False,
    self_weight: float | None = None,
    seed: int = 0,
    **graph_kwargs,
) -> mixing_lib.Topology:
  """Builds a topology by name, with its mixing weights.

  Args:
    name: a graph of `graphs.GRAPHS` ('ring', 'path', 'star', 'torus', 'complete', 'hypercube',
      'exponential', 'erdos_renyi', 'random_regular', 'disconnected') or a time-varying schedule
      ('random_matchings', 'one_peer_exponential').
    num_nodes: N.
    weights: 'metropolis_hastings' (default) or 'uniform' for graphs; schedules fix their own
      weights (pairwise averaging), so leave it None for them.
    lazy: replace every W by (I + W) / 2.
    self_weight: W_ii of uniform weights on a regular graph (default 1 / (d + 1)).
    seed: seed of the random graphs and schedules.
    **graph_kwargs: the graph's own arguments (exponential: max_power; erdos_renyi:
      edge_probability; random_regular: degree; random_matchings: period).

  Returns:
    Topology.
  """
  if name in schedules_lib.SCHEDULES:
    if weights is not None or self_weight is not None:
      raise ValueError(f'{name} is a time-varying schedule with fixed pairwise weights; leave '
                       'config.topology.weights and self_weight unset.')
    topology = schedules_lib.SCHEDULES[name](num_nodes, seed=seed, **graph_kwargs) if name == 'random_matchings' \
        else schedules_lib.SCHEDULES[name](num_nodes, **graph_kwargs)
  else:
    if name in ('erdos_renyi', 'random_regular'):
      graph_kwargs['seed'] = seed
    adjacency = graphs_lib.make_graph(name, num_nodes, **graph_kwargs)
    mixing = _weights(adjacency, weights or 'metropolis_hastings', self_weight)
    topology = mixing_lib.Topology(name, adjacency, mixing[None])
  if lazy:
    topology = topology._replace(name=f'lazy_{topology.name}', mixing=mixing_lib.lazy(topology.mixing))
  return topology
