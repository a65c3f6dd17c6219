"""Topologies of decentralized training: graphs, mixing matrices, spectral quantities, gossip.

  topo = fl.topology.make_topology('ring', 16, weights='uniform')   # W with 1/3 weights
  topo.rho, topo.spectral_gap, topo.connected
  gossip = fl.topology.make_gossip(topo)                           # dense or sparse, auto
  x = gossip.mix(x, step)                                          # leaves [N, ...]
"""

from fedjax_lab.topology.catalog import make_topology
from fedjax_lab.topology.gossip import (Gossip, choose_impl, consensus_error, dense_gossip, make_gossip,
                                        neighbor_lists, node_average, sparse_gossip)
from fedjax_lab.topology.graphs import (GRAPHS, circulant, complete, connected_components, disconnected,
                                        erdos_renyi, exponential, hypercube, is_connected, make_graph, path,
                                        random_regular, ring, star, torus)
from fedjax_lab.topology.mixing import (WEIGHTS, Topology, check_mixing_matrix, consensus_rate,
                                        from_mixing_matrix, lazy, metropolis_hastings,
                                        period_product, rho, spectral_gap, uniform)
from fedjax_lab.topology.schedules import SCHEDULES, one_peer_exponential, random_matchings
from fedjax_lab.topology.sharded import ppermute_gossip, sharded_roll
