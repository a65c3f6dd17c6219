"""Gossip: applying a mixing matrix over the node axis of node-stacked parameters.

`x` is a pytree whose leaves are [N, ...] (node i's copy of the model in row i); one gossip step
replaces it by W_t x, i.e. x_i <- sum_j W_t[i, j] x_j, with t the step index (a traced int, so a
time-varying schedule never recompiles). Three implementations give the same numbers:

  'dense'     einsum with W [N, N]: O(N^2 P) work, one matmul; best for small N or dense graphs.
  'sparse'    neighbour gather from padded lists: neighbors [N, D] (self first, padding repeats the
              node itself with weight 0) and weights [N, D]: O(N D P) work, D = max degree + 1.
  'ppermute'  ring / torus / any circulant W on a device mesh: `jax.lax.ppermute` halo exchange
              inside `jax.shard_map` (see `fedjax_lab.topology.sharded`).

'auto' picks sparse when N >= 64 and the densest row of W has at most N / 4 non-zeros, dense
otherwise: sparse work grows with the degree, dense with N, so sparse wins on large sparse graphs
(timings: benchmarks/gossip_bench.py, recorded in WORKSPACE.md).

A `Gossip` keeps its arrays in `operands` and its pure function in `apply(operands, x, step)`;
`gossip.mix(x, step)` closes over the operands (they become compile-time constants), while a caller
that wants them as runtime arguments (the benchmark, large N) passes them to `apply` itself.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab.topology import sharded
from fedjax_lab.topology.gossip_base import Gossip, as_operand, num_links, select_step
from fedjax_lab.topology.mixing import Topology

PyTree = Any
IMPLEMENTATIONS = ('auto', 'dense', 'sparse', 'ppermute')
SPARSE_MIN_NODES = 64
SPARSE_MAX_FILL = 1.0 / 4


# ---------------------------------------------------------------------------------------------
# Dense.


def dense_apply(operands: jax.Array, x: PyTree, step, period: int = 1) -> PyTree:
  """x_i <- sum_j W[i, j] x_j with W = operands[step % period] [N, N]; leaves [N, ...]."""
  matrix = select_step(operands, step, period)

  def one(leaf):
    return jnp.einsum('ij,j...->i...', jnp.asarray(matrix, leaf.dtype), leaf).astype(leaf.dtype)

  return jax.tree.map(one, x)


def dense_gossip(topology: Topology, dtype=None) -> Gossip:
  """Dense einsum gossip with the topology's mixing stack [T, N, N].

  dtype None keeps the weights as float64 numpy constants cast to each leaf's dtype at trace time;
  a dtype (e.g. jnp.float32) stores device arrays, for callers passing operands at run time.
  """
  period = topology.period
  operands = as_operand(topology.mixing, dtype)
  return Gossip(operands, lambda ops, x, step: dense_apply(ops, x, step, period), 'dense',
                topology.num_nodes, period, num_links(topology.mixing))


# ---------------------------------------------------------------------------------------------
# Sparse.


def neighbor_lists(mixing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Padded neighbour lists of a mixing stack.

  Args:
    mixing: [T, N, N] (or [N, N]).

  Returns:
    neighbors: [T, N, D] int32; slot 0 is the node itself, then the j with W[i, j] != 0 in
      increasing order, padded with the node itself.
    weights: [T, N, D] float64; W[i, neighbors[i, d]], 0 on padding.
    D is one plus the largest number of off-diagonal non-zeros of any row.
  """
  mixing = np.asarray(mixing, np.float64)
  if mixing.ndim == 2:
    mixing = mixing[None]
  period, num_nodes, _ = mixing.shape
  links = (mixing != 0) & ~np.eye(num_nodes, dtype=bool)
  width = 1 + int(links.sum(axis=-1).max())
  neighbors = np.tile(np.arange(num_nodes, dtype=np.int32)[None, :, None], (period, 1, width))
  weights = np.zeros((period, num_nodes, width))
  nodes = np.arange(num_nodes)
  weights[:, :, 0] = mixing[:, nodes, nodes]
  for t in range(period):
    rows, cols = np.nonzero(links[t])
    # Slot of every link inside its row: its rank among the row's links (rows come out sorted).
    starts = np.searchsorted(rows, rows, side='left')
    slots = 1 + np.arange(rows.size) - starts
    neighbors[t, rows, slots] = cols
    weights[t, rows, slots] = mixing[t, rows, cols]
  return neighbors, weights


def sparse_apply(operands: tuple[jax.Array, jax.Array], x: PyTree, step, period: int = 1) -> PyTree:
  """x_i <- sum_d weights[i, d] x_{neighbors[i, d]} at step % period; leaves [N, ...]."""
  neighbors, weights = (select_step(a, step, period) for a in operands)

  def one(leaf):
    w = jnp.asarray(weights, leaf.dtype)
    expand = (slice(None),) + (None,) * (leaf.ndim - 1)
    # One gather per slot keeps memory at [N, ...] instead of materialising [N, D, ...].
    nbrs = jnp.asarray(neighbors)
    total = w[:, 0][expand] * jnp.take(leaf, nbrs[:, 0], axis=0)
    for d in range(1, neighbors.shape[1]):
      total = total + w[:, d][expand] * jnp.take(leaf, nbrs[:, d], axis=0)
    return total

  return jax.tree.map(one, x)


def sparse_gossip(topology: Topology, dtype=None) -> Gossip:
  """Neighbour-gather gossip from padded neighbour lists (see `neighbor_lists`; dtype as dense)."""
  neighbors, weights = neighbor_lists(topology.mixing)
  period = topology.period
  operands = (neighbors if dtype is None else jnp.asarray(neighbors), as_operand(weights, dtype))
  return Gossip(operands, lambda ops, x, step: sparse_apply(ops, x, step, period), 'sparse',
                topology.num_nodes, period, num_links(topology.mixing))


# ---------------------------------------------------------------------------------------------
# Selection.


def choose_impl(topology: Topology) -> str:
  """'sparse' when N >= 64 and no row of W has more than N/4 non-zeros, else 'dense'."""
  fill = int((topology.mixing != 0).sum(axis=-1).max())
  num_nodes = topology.num_nodes
  return 'sparse' if num_nodes >= SPARSE_MIN_NODES and fill <= SPARSE_MAX_FILL * num_nodes else 'dense'


def make_gossip(topology: Topology, impl: str = 'auto', mesh=None, dtype=None) -> Gossip:
  """Builds the gossip operator of a topology.

  Args:
    topology: the topology (static or time-varying).
    impl: 'auto', 'dense', 'sparse' or 'ppermute' (needs `mesh` and a ring, torus or circulant W).
    mesh: device mesh with a 'clients' axis, for impl='ppermute'.
    dtype: None (default) keeps float64 numpy weights, cast to each leaf's dtype when traced;
      a dtype stores device arrays (pass `operands` to `apply` at run time for large N).

  Returns:
    Gossip.
  """
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'Unknown gossip impl={impl!r} (config.topology.gossip); choose one of {IMPLEMENTATIONS}.')
  if impl == 'ppermute':
    return sharded.ppermute_gossip(topology, mesh, dtype)
  if impl == 'auto':
    impl = choose_impl(topology)
  return dense_gossip(topology, dtype) if impl == 'dense' else sparse_gossip(topology, dtype)


def consensus_error(x: PyTree) -> jax.Array:
  """(1/N) sum_i ||x_i - mean_j x_j||^2 over all leaves [N, ...]: scalar float32."""
  def one(leaf):
    leaf = leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))
    return jnp.sum(jnp.square(leaf - jnp.mean(leaf, axis=0, keepdims=True))) / leaf.shape[0]

  return sum(jax.tree.leaves(jax.tree.map(one, x)))


def node_average(x: PyTree) -> PyTree:
  """mean_i x_i: leaves [N, ...] -> [...]."""
  return jax.tree.map(lambda leaf: jnp.mean(leaf, axis=0), x)
