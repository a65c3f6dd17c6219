"""Gossip across devices: ring, torus and circulant mixing as `ppermute` halo exchanges.

The node axis is split over the mesh axis 'clients' in contiguous blocks of b = N / devices nodes.
A circulant W (ring, exponential graph, one-peer exponential schedule) is a sum of shifts,

  (W x)_i = sum_s c_s x_{(i + s) mod N},

and a k x k torus (node i at row i // k, column i % k) is a sum of 2-D shifts,

  (W x)_(r, c) = sum_(a, b) C_(a, b) x_((r + a) mod k, (c + b) mod k).

A global shift of the node axis needs from each device only the rows that cross a block boundary:
`sharded_roll` sends them with at most two `jax.lax.ppermute`s (a shift by a multiple of b moves
whole blocks; a shift smaller than b sends a halo of |s| rows). A 2-D shift is a flat shift by
a k + b, except in the columns that wrap around, which take the flat shift by a k + b - k instead.

The coefficients c (or C) are read from the topology's mixing matrices, so any weights work
(1/3 ring, Metropolis-Hastings, lazy versions, time-varying circulant schedules); `ppermute_gossip`
raises ValueError when W has neither structure.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from fedjax_lab.clients.placement import CLIENT_AXIS
from fedjax_lab.topology.gossip_base import Gossip, as_operand, num_links, select_step
from fedjax_lab.topology.mixing import Topology


def circulant_coefficients(mixing: np.ndarray, atol: float = 1e-12) -> np.ndarray | None:
  """c [T, N] with W_t[i, j] = c_t[(j - i) mod N] if every W_t is circulant, else None."""
  mixing = np.asarray(mixing, np.float64)
  num_nodes = mixing.shape[-1]
  coefficients = mixing[:, 0, :]
  nodes = np.arange(num_nodes)
  rebuilt = coefficients[:, (nodes[None, :] - nodes[:, None]) % num_nodes]
  return coefficients if np.allclose(rebuilt, mixing, atol=atol, rtol=0) else None


def torus_coefficients(mixing: np.ndarray, atol: float = 1e-12) -> np.ndarray | None:
  """C [T, k, k] with W_t[(r,c), (r',c')] = C_t[(r'-r) mod k, (c'-c) mod k], else None."""
  mixing = np.asarray(mixing, np.float64)
  num_nodes = mixing.shape[-1]
  side = math.isqrt(num_nodes)
  if side * side != num_nodes:
    return None
  coefficients = mixing[:, 0, :].reshape(-1, side, side)
  r, c = np.divmod(np.arange(num_nodes), side)
  dr = (r[None, :] - r[:, None]) % side
  dc = (c[None, :] - c[:, None]) % side
  rebuilt = coefficients[:, dr, dc]
  return coefficients if np.allclose(rebuilt, mixing, atol=atol, rtol=0) else None


def sharded_roll(block: jax.Array, shift: int, num_nodes: int, num_devices: int,
                 axis_name: str = CLIENT_AXIS) -> jax.Array:
  """Inside shard_map: this device's block of y with y_i = x_{(i + shift) mod N}.

  Args:
    block: [b, ...] this device's nodes, b = N / num_devices (contiguous blocks in device order).
    shift: static int.
    num_nodes: N.
    num_devices: size of the mesh axis.
    axis_name: mesh axis of the node dimension.

  Returns:
    [b, ...] the shifted block.
  """
  size = block.shape[0]
  shift %= num_nodes
  blocks_ahead, rows = divmod(shift, size)

  def from_device_ahead(piece, ahead):
    ahead %= num_devices
    if ahead == 0:
      return piece
    # Device j needs device (j + ahead)'s piece, so device src sends to src - ahead.
    perm = [(src, (src - ahead) % num_devices) for src in range(num_devices)]
    return jax.lax.ppermute(piece, axis_name, perm)

  head = from_device_ahead(block[rows:], blocks_ahead)
  if rows == 0:
    return head
  tail = from_device_ahead(block[:rows], blocks_ahead + 1)
  return jnp.concatenate([head, tail], axis=0)


def _check_mesh(mesh, num_nodes: int) -> int:
  if mesh is None or CLIENT_AXIS not in mesh.shape:
    raise ValueError(f"gossip impl='ppermute' needs a mesh with a {CLIENT_AXIS!r} axis "
                     '(fedjax_lab.clients.placement.client_mesh); config.num_devices must be > 1.')
  num_devices = int(mesh.shape[CLIENT_AXIS])
  if num_nodes % num_devices:
    raise ValueError(f'num_nodes={num_nodes} must be a multiple of the {num_devices} devices for '
                     "gossip impl='ppermute'.")
  return num_devices


def ppermute_gossip(topology: Topology, mesh, dtype=None) -> Gossip:
  """Gossip by ppermute halo exchange on `mesh`, for circulant (ring, exponential) or torus W.

  Args:
    topology: a topology whose every W_t is circulant, or 2-D circulant on a k x k torus.
    mesh: mesh with a 'clients' axis whose size divides N.
    dtype: dtype of the coefficients (None: float64 numpy, cast to each leaf's dtype).

  Returns:
    Gossip with impl 'ppermute'; its output leaves are sharded P('clients') on `mesh`.

  Raises:
    ValueError: no mesh, N not a multiple of the device count, or W neither circulant nor torus.
  """
  num_nodes, period = topology.num_nodes, topology.period
  num_devices = _check_mesh(mesh, num_nodes)
  coefficients = circulant_coefficients(topology.mixing)
  if coefficients is not None:
    shifts = [int(s) for s in np.flatnonzero(np.any(coefficients != 0, axis=0))]

    def local(coeffs, leaf, step):
      c = jnp.asarray(select_step(coeffs, step, period), leaf.dtype)
      expand = (None,) * (leaf.ndim - 1)
      out = jnp.zeros_like(leaf)
      for s in shifts:
        out = out + c[s][expand] * sharded_roll(leaf, s, num_nodes, num_devices)
      return out
  else:
    coefficients = torus_coefficients(topology.mixing)
    if coefficients is None:
      raise ValueError(f"gossip impl='ppermute' supports circulant W (ring, exponential, one-peer "
                       f'exponential) and the k x k torus; {topology.name!r} is neither. Use '
                       "impl='dense' or 'sparse'.")
    side = coefficients.shape[-1]
    offsets = [(int(a), int(b)) for a, b in np.argwhere(np.any(coefficients != 0, axis=0))]

    def local(coeffs, leaf, step):
      c = jnp.asarray(select_step(coeffs, step, period), leaf.dtype)
      size = leaf.shape[0]
      column = (jax.lax.axis_index(CLIENT_AXIS) * size + jnp.arange(size)) % side
      expand = (slice(None),) + (None,) * (leaf.ndim - 1)
      out = jnp.zeros_like(leaf)
      for a, b in offsets:
        term = sharded_roll(leaf, a * side + b, num_nodes, num_devices)
        if b:
          wrapped = sharded_roll(leaf, a * side + b - side, num_nodes, num_devices)
          term = jnp.where((column + b < side)[expand], term, wrapped)
        out = out + c[a, b] * term
      return out

  def apply(operands, x, step):
    def body(coeffs, x_local, step_local):
      return jax.tree.map(lambda leaf: local(coeffs, leaf, step_local), x_local)

    return jax.shard_map(body, mesh=mesh, in_specs=(P(), P(CLIENT_AXIS), P()),
                         out_specs=P(CLIENT_AXIS))(operands, x, jnp.asarray(step, jnp.int32))

  operands = as_operand(coefficients, dtype)
  return Gossip(operands, apply, 'ppermute', num_nodes, period, num_links(topology.mixing))
