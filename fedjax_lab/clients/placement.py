"""Placement: how a per-client function runs over a cohort, on one device or across a mesh.

A per-client function is written for one client, `fn(shared, client) -> output`, where `shared`
(e.g. the global parameters) is the same for every client and `client` is one slice of a pytree
whose leaves have the cohort axis first. This module is the only place that decides how the
cohort is traversed:

  'vmap'     all clients at once (one wide program; the right choice on GPU/TPU).
  'scan'     clients one after another inside one compiled program (`lax.map`); on CPU this is
             the fastest (vmap pushes the client axis into every op) and its memory does not
             grow with the cohort when combined with a running weighted sum.
  'chunked'  `lax.map` over chunks of `chunk_size` clients with `vmap` inside: trades memory
             for parallelism.
  'auto'     'scan' on CPU, 'vmap' elsewhere (measured; see benchmarks/placement_bench.py).

With a `mesh` that has a 'clients' axis of size > 1, the cohort is split across devices with
`jax.shard_map`; each device applies the strategy to its share. A cohort whose size does not divide
evenly is padded with zero clients (weight 0), which are dropped from stacked outputs again.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from fedjax_lab.clients.vma import match_vma

PyTree = Any
CLIENT_AXIS = 'clients'
STRATEGIES = ('auto', 'vmap', 'scan', 'chunked')


def resolve_strategy(strategy: str, backend: str | None = None) -> str:
  """Maps 'auto' to a concrete strategy for the backend; validates the name."""
  if strategy not in STRATEGIES:
    raise ValueError(f'Unknown placement {strategy!r} (config.placement); choose one of {STRATEGIES}.')
  if strategy != 'auto':
    return strategy
  backend = backend or jax.default_backend()
  return 'scan' if backend == 'cpu' else 'vmap'


def validate_placement(strategy: str, chunk_size: int | None) -> None:
  resolve_strategy(strategy)
  if strategy == 'chunked' and (chunk_size is None or chunk_size < 1):
    raise ValueError(f'config.chunk_size={chunk_size} must be >= 1 for placement="chunked".')


def num_mesh_clients(mesh: Mesh | None) -> int:
  return 1 if mesh is None else int(mesh.shape[CLIENT_AXIS])


def cohort_size(per_client: PyTree) -> int:
  return int(jax.tree.leaves(per_client)[0].shape[0])


def _pad_leading(tree: PyTree, multiple: int) -> PyTree:
  size = cohort_size(tree)
  extra = (-size) % multiple
  if extra == 0:
    return tree
  return jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((extra,) + a.shape[1:], a.dtype)]), tree)


def _map_local(fn, shared, per_client, strategy: str, chunk_size: int | None):
  one = lambda client: fn(shared, client)
  if strategy == 'vmap':
    return jax.vmap(one)(per_client)
  if strategy == 'scan':
    return jax.lax.map(one, per_client)
  return jax.lax.map(one, per_client, batch_size=chunk_size)


def _weighted_sum_local(fn, shared, per_client, weights, strategy: str, chunk_size: int | None):
  """sum_i weights[i] * fn(shared, client_i) for every output leaf (float32)."""
  one = lambda client: jax.tree.map(lambda o: o.astype(jnp.float32), fn(shared, client))
  if strategy == 'vmap':
    return jax.tree.map(lambda o: jnp.tensordot(weights, o, axes=1), jax.vmap(one)(per_client))
  chunk = 1 if strategy == 'scan' else chunk_size
  # lax.map's batch_size leaves a remainder; here the cohort is padded to whole chunks instead.
  per_client = _pad_leading(per_client, chunk)
  weights = _pad_leading(weights, chunk)
  chunks = jax.tree.map(lambda a: a.reshape((-1, chunk) + a.shape[1:]), (per_client, weights))
  template = jax.eval_shape(one, jax.tree.map(lambda a: a[0], per_client))
  zeros = match_vma(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template), weights)

  def body(total, chunk_inputs):
    clients, w = chunk_inputs
    if chunk == 1:
      out = one(jax.tree.map(lambda a: a[0], clients))
      return jax.tree.map(lambda t, o: t + w[0] * o, total, out), None
    out = jax.vmap(one)(clients)
    return jax.tree.map(lambda t, o: t + jnp.tensordot(w, o, axes=1), total, out), None

  total, _ = jax.lax.scan(body, zeros, chunks)
  return total


def _device_varying(tree: PyTree) -> PyTree:
  # A replicated input differentiated inside shard_map would get its gradient summed over
  # devices; marking it device-varying keeps each device's local training independent.
  return jax.tree.map(lambda a: jax.lax.pcast(a, CLIENT_AXIS, to='varying'), tree)


def map_clients(
    fn: Callable[[PyTree, PyTree], PyTree],
    shared: PyTree,
    per_client: PyTree,
    strategy: str = 'auto',
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> PyTree:
  """Applies `fn(shared, client)` to every client; returns outputs stacked on a leading [C] axis.

  Args:
    fn: per-client function.
    shared: pytree given to every client unchanged (replicated across devices).
    per_client: pytree, leaves [C, ...].
    strategy: see the module docstring.
    chunk_size: clients per chunk for 'chunked'.
    mesh: optional mesh with a 'clients' axis to spread the cohort over devices.

  Returns:
    pytree of outputs, leaves [C, ...] (sharded over 'clients' when a mesh is given).
  """
  strategy = resolve_strategy(strategy)
  devices = num_mesh_clients(mesh)
  if devices == 1:
    return _map_local(fn, shared, per_client, strategy, chunk_size)
  size = cohort_size(per_client)
  padded = _pad_leading(per_client, devices)

  def body(shared, clients):
    return _map_local(fn, _device_varying(shared), clients, strategy, chunk_size)

  out = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(CLIENT_AXIS)), out_specs=P(CLIENT_AXIS))(shared, padded)
  return jax.tree.map(lambda a: a[:size], out)


def weighted_sum_clients(
    fn: Callable[[PyTree, PyTree], PyTree],
    shared: PyTree,
    per_client: PyTree,
    weights: jax.Array,
    strategy: str = 'auto',
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> PyTree:
  """Streams sum_i weights[i] * fn(shared, client_i) without materialising the [C, ...] stack.

  With 'scan' or 'chunked' the memory is that of one client (or one chunk) whatever C is; across
  devices each device sums its share and one `psum` combines them.

  Args:
    fn, shared, per_client, strategy, chunk_size, mesh: as in `map_clients`.
    weights: [C] float32.

  Returns:
    pytree like one client's output, float32 leaves (replicated across devices).
  """
  strategy = resolve_strategy(strategy)
  weights = jnp.asarray(weights, jnp.float32)
  devices = num_mesh_clients(mesh)
  if devices == 1:
    return _weighted_sum_local(fn, shared, per_client, weights, strategy, chunk_size)
  padded, padded_weights = _pad_leading((per_client, weights), devices)

  def body(shared, clients, w):
    partial = _weighted_sum_local(fn, _device_varying(shared), clients, w, strategy, chunk_size)
    return jax.lax.psum(partial, CLIENT_AXIS)

  return jax.shard_map(body, mesh=mesh, in_specs=(P(), P(CLIENT_AXIS), P(CLIENT_AXIS)),
                       out_specs=P())(shared, padded, padded_weights)


def client_mesh(num_devices: int | None = None) -> Mesh | None:
  """A 1-D mesh over the first `num_devices` devices (all when None or 0), axis 'clients'.

  Returns None for a single device, so callers take the plain single-device path.
  """
  available = jax.device_count()
  num_devices = num_devices or available
  if num_devices > available:
    raise ValueError(f'config.num_devices={num_devices} exceeds the {available} available devices.')
  if num_devices == 1:
    return None
  return jax.make_mesh((num_devices,), (CLIENT_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:num_devices])
