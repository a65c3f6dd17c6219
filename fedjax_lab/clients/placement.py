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
  'auto'     'scan' on CPU (measured: benchmarks/placement_bench.py), 'vmap' elsewhere (the usual
             choice for GPU/TPU, not yet measured here: no accelerator has been lent to this project).

With a `mesh` that has a 'clients' axis of size > 1, the cohort is split across devices with
`jax.shard_map`; each device applies the strategy to its share. A cohort whose size does not divide
evenly is padded with zero clients (weight 0), which are dropped from stacked outputs again
(that padding copies the cohort: pick C divisible by the device count for memory flat in C).
`client_mesh(0)` (config.num_devices = 0, the default) spans every usable core on CPU and every
device on an accelerator (`default_num_devices`); `fedjax_lab.runtime.devices.use_all_cores` creates
one CPU device per core before JAX starts.

Rows read by id (`rows_by_id=(table, ids)` of the streaming sums): each client's rows come from a table
(the population, leaves [K, ...]) inside the client loop, never as a [C, ...] copy. On a mesh the table is
either whole on every device (one copy per device: on CPU, D copies in the same RAM) or split by rows
(`shard_rows`, `rows_split=True`: K / D rows per device); a split table is read in blocks of clients, each
block's rows fetched from their owners with one `psum_scatter` (D x block rows of traffic per device,
D x block rows ~ FETCH_BLOCK_BYTES of memory). Both give the same numbers bit for bit.

Streaming sums (`weighted_sum_clients`, `sum_clients`) never build the [C, ...] stack: 'scan' and
'chunked' read each chunk in place inside the loop and add the remainder as one smaller chunk, so
XLA's temporary memory is one client's (one chunk's) whatever C is. `chunk_size_for_budget` and
`pick_chunk_size` choose the largest chunk whose compiled temporary memory fits a budget
(`config.memory_budget_mb`), measured with `compile().memory_analysis()`.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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
  # GPU/TPU: vmap is the conventional choice, unmeasured here (no accelerator lent yet); CPU is measured.
  return 'scan' if backend == 'cpu' else 'vmap'


def validate_placement(strategy: str, chunk_size: int | None, memory_budget_mb: float | None = None) -> None:
  """Checks config.placement, config.chunk_size and config.memory_budget_mb before compiling.

  'chunked' needs chunk_size >= 1, or no chunk_size (0 or None) and memory_budget_mb > 0, in which
  case the runner picks the largest chunk that fits (`chunk_size_for_budget`).

  Args:
    strategy: config.placement.
    chunk_size: config.chunk_size (None or 0: not set).
    memory_budget_mb: config.memory_budget_mb (0: no budget). None means the caller does not
      know the budget (a first check on the placement fields alone): 'chunked' without a chunk
      size is then accepted here and resolved or rejected where the algorithm is built. An
      algorithm needs a concrete chunk and passes 0.
  """
  resolve_strategy(strategy)
  if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 0):
    raise ValueError(f'config.chunk_size={chunk_size!r} must be an integer >= 1 (or 0 to pick it from '
                     'config.memory_budget_mb).')
  chunk_size = chunk_size or None
  if memory_budget_mb:
    if not (isinstance(memory_budget_mb, (int, float)) and math.isfinite(memory_budget_mb) and memory_budget_mb > 0):
      raise ValueError(f'config.memory_budget_mb={memory_budget_mb!r} must be a finite number > 0 (0: no budget).')
    if strategy != 'chunked':
      raise ValueError(f'config.memory_budget_mb={memory_budget_mb} picks the chunk of placement="chunked"; '
                       f'config.placement is {strategy!r}.')
    if chunk_size is not None:
      raise ValueError(f'config.chunk_size={chunk_size} and config.memory_budget_mb={memory_budget_mb} are both '
                       'set; set chunk_size=0 to pick the chunk from the budget, or memory_budget_mb=0.')
  elif memory_budget_mb is not None and memory_budget_mb != 0:
    raise ValueError(f'config.memory_budget_mb={memory_budget_mb!r} must be a finite number > 0 (0: no budget).')
  if strategy == 'chunked' and chunk_size is None and memory_budget_mb is not None and not memory_budget_mb:
    raise ValueError(f'config.chunk_size={chunk_size} must be >= 1 for placement="chunked" (or 0 with '
                     'config.memory_budget_mb > 0 to pick the largest chunk that fits the budget).')


class Placement(NamedTuple):
  """How an algorithm runs its per-client function: one value, validated once (`make_placement`).

  Attributes:
    strategy: 'auto', 'vmap', 'scan' or 'chunked' (config.placement).
    chunk_size: clients per chunk for 'chunked' (config.chunk_size), else None.
    mesh: optional mesh with a 'clients' axis to spread the cohort over devices.
  """

  strategy: str = 'auto'
  chunk_size: int | None = None
  mesh: Mesh | None = None

  def map_clients(self, fn: Callable[[PyTree, PyTree], PyTree], shared: PyTree, per_client: PyTree) -> PyTree:
    """`map_clients` with this placement."""
    return map_clients(fn, shared, per_client, self.strategy, self.chunk_size, self.mesh)

  def weighted_sum_clients(self, fn: Callable[[PyTree, PyTree], PyTree], shared: PyTree, per_client: PyTree,
                           weights: jax.Array, rows_by_id: tuple[PyTree, jax.Array] | None = None,
                           rows_split: bool = False) -> PyTree:
    """`weighted_sum_clients` with this placement."""
    return weighted_sum_clients(fn, shared, per_client, weights, self.strategy, self.chunk_size, self.mesh,
                                rows_by_id, rows_split)

  def sum_clients(self, fn: Callable[[PyTree, PyTree], PyTree], shared: PyTree, per_client: PyTree,
                  rows_by_id: tuple[PyTree, jax.Array] | None = None, rows_split: bool = False) -> PyTree:
    """`sum_clients` with this placement."""
    return sum_clients(fn, shared, per_client, self.strategy, self.chunk_size, self.mesh, rows_by_id, rows_split)

  @property
  def num_devices(self) -> int:
    return num_mesh_clients(self.mesh)


def make_placement(strategy: str = 'auto', chunk_size: int | None = None, mesh: Mesh | None = None) -> Placement:
  """A validated Placement (raises ValueError naming config.placement / config.chunk_size).

  The chunk must be concrete here: a budget-picked chunk (config.memory_budget_mb) is resolved by
  the runner before the Placement is made.
  """
  validate_placement(strategy, chunk_size or None, memory_budget_mb=0)
  return Placement(strategy, chunk_size or None, mesh)


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


def _masked_sum(weights: jax.Array | None, outputs: PyTree) -> PyTree:
  """sum_i weights[i] * outputs[i] over a leading chunk axis; a weight-0 client adds exactly 0.

  `where`, not only the product: a dropped or padding client's output may be inf or nan, and
  0 * inf would leak a nan into the sum. weights=None: a plain sum.
  """
  if weights is None:
    return jax.tree.map(lambda o: jnp.sum(o, axis=0), outputs)

  def reduce(o):
    keep = (weights > 0).reshape((-1,) + (1,) * (o.ndim - 1))
    return jnp.tensordot(weights, jnp.where(keep, o, 0.0), axes=1)
  return jax.tree.map(reduce, outputs)


def _weighted_sum_local(fn, shared, per_client, weights, strategy: str, chunk_size: int | None, read=None):
  """sum_i weights[i] * fn(shared, client_i) for every output leaf (float32); weights=None: plain sum.

  'scan' and 'chunked' read each chunk of the cohort in place (`dynamic_slice` inside the loop)
  and add a remainder chunk at the end, so nothing of size C (no padded copy of the cohort, no
  stacked outputs) is ever materialised: XLA's temporary memory is that of one chunk.

  read: None, or `ids [k] -> rows [k, ...]` when `per_client` is (ids, rest): each chunk's rows are
  read inside the loop and `fn` receives (row_i, rest_i).
  """
  one = lambda client: jax.tree.map(lambda o: o.astype(jnp.float32), fn(shared, client))
  with_rows = (lambda clients: clients) if read is None else (lambda clients: (read(clients[0]), clients[1]))
  if strategy == 'vmap':
    return _masked_sum(weights, jax.vmap(one)(with_rows(per_client)))
  chunk = 1 if strategy == 'scan' else int(chunk_size)
  size = cohort_size(per_client)
  chunk = min(chunk, size)
  full = size // chunk
  first_client = lambda clients: one(jax.tree.map(lambda a: a[0], with_rows(clients)))
  template = jax.eval_shape(first_client, jax.tree.map(lambda a: a[:1], per_client))
  reference = weights if weights is not None else jax.tree.leaves(per_client)[0]
  zeros = match_vma(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template), reference)
  take_weights = lambda f: None if weights is None else f(weights)

  def add(total, clients, w):
    clients = with_rows(clients)
    if cohort_size(clients) == 1:
      out = jax.tree.map(lambda o: o[None], one(jax.tree.map(lambda a: a[0], clients)))
    else:
      out = jax.vmap(one)(clients)
    return jax.tree.map(jnp.add, total, _masked_sum(w, out))

  def body(i, total):
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk)
    return add(total, jax.tree.map(take, per_client), take_weights(take))

  total = jax.lax.fori_loop(0, full, body, zeros)
  if size > full * chunk:  # the remainder: one smaller chunk, never a padded copy of the cohort
    tail = lambda a: a[full * chunk:]
    total = add(total, jax.tree.map(tail, per_client), take_weights(tail))
  return total


# A table split over devices is read in blocks (`_read_split`): one fetch moves D slots of a block's
# rows through every device (D x block rows per device, ~1 ms of rendezvous on CPU), so a block holds
# as many clients as keep those D x block rows near this many bytes (at least one chunk).
FETCH_BLOCK_BYTES = 8 * 2 ** 20


def _fetch_block_clients(table: PyTree, chunk: int, size: int) -> int:
  """Clients per fetched block: D x block rows ~ FETCH_BLOCK_BYTES, a multiple of `chunk`, at most `size`."""
  row_bytes = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in jax.tree.leaves(table))
  devices = jax.lax.axis_size(CLIENT_AXIS)
  block = max(1, FETCH_BLOCK_BYTES // max(devices * row_bytes, 1)) // chunk * chunk
  return max(chunk, min(block, size))


def _weighted_sum_fetched(fn, shared, per_client, weights, strategy: str, chunk_size: int | None, table):
  """`_weighted_sum_local` over (ids, rest) whose rows come from a table split over the devices.

  The clients go in blocks (`_fetch_block_clients`): one collective fetch of a block's rows
  (`_read_split`), then the block trains as a gathered cohort. Memory: one block of rows, whatever C.
  """
  size = cohort_size(per_client)
  chunk = 1 if strategy in ('scan', 'vmap') else int(chunk_size)
  block = size if strategy == 'vmap' else _fetch_block_clients(table, min(chunk, size), size)
  full = size // block

  def block_sum(clients, w):
    ids, rest = clients
    return _weighted_sum_local(fn, shared, (_read_split(table, ids), rest), w, strategy, chunk_size)

  def body(i, total):
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, i * block, block)
    part = block_sum(jax.tree.map(take, per_client), None if weights is None else take(weights))
    return jax.tree.map(jnp.add, total, part)

  first = jax.tree.map(lambda a: a[:block], per_client)
  template = jax.eval_shape(block_sum, first, None if weights is None else weights[:block])
  reference = weights if weights is not None else jax.tree.leaves(per_client)[0]
  total = match_vma(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template), reference)
  total = jax.lax.fori_loop(0, full, body, total)
  if size > full * block:
    tail = lambda a: a[full * block:]
    total = jax.tree.map(jnp.add, total, block_sum(jax.tree.map(tail, per_client),
                                                   None if weights is None else tail(weights)))
  return total


def _read_local(table: PyTree, ids: jax.Array) -> PyTree:
  """Rows `ids` [k] of a table held whole on this device: leaves [k, ...]."""
  return jax.tree.map(lambda a: jnp.take(a, ids, axis=0), table)


def _read_split(table: PyTree, ids: jax.Array) -> PyTree:
  """Rows `ids` [k] (global row numbers) of a table split by rows over the 'clients' axis.

  Inside `shard_map`: device d holds rows [d * S, (d + 1) * S) of the table (leaves [S, ...]) and
  asks for its own k ids. The ids of every device are gathered ([D, k] ints), each device fills the
  slots it owns with its rows and zeros elsewhere ([D, k, ...]), and one `psum_scatter` hands device
  d the sum of slot d over devices: exactly its rows (one owner each; the others add zeros). What
  moves is D x k rows per step, never the table.
  """
  wanted = jax.lax.all_gather(ids, CLIENT_AXIS)  # [D, k]
  me = jax.lax.axis_index(CLIENT_AXIS)

  def read(a):
    shard = a.shape[0]
    local = wanted - me * shard
    local = jnp.where((local >= 0) & (local < shard), local, shard)  # `shard` (out of range): not mine
    rows = jnp.take(a, local, axis=0, mode='fill', fill_value=0)  # [D, k, ...]: zeros where not owned
    return jax.lax.psum_scatter(rows, CLIENT_AXIS, scatter_dimension=0)

  return jax.tree.map(read, table)


def shard_rows(table: PyTree, mesh: Mesh | None) -> PyTree:
  """A host table (leaves [K, ...], e.g. the population) on the mesh, split by rows.

  Padded with zero rows to a multiple of the device count and placed with `P('clients')`, so each
  device holds ceil(K / D) rows instead of a whole copy; read it with `rows_split=True`. Without a
  mesh, placed whole on the default device. Callers that count rows (the cohort sampler) must be told
  K, since padding adds rows.
  """
  if mesh is None:
    return jax.tree.map(jax.device_put, table)
  devices = num_mesh_clients(mesh)

  def pad(a):
    a = np.asarray(a)
    return np.concatenate([a, np.zeros(((-a.shape[0]) % devices,) + a.shape[1:], a.dtype)])

  return jax.device_put(jax.tree.map(pad, table), NamedSharding(mesh, P(CLIENT_AXIS)))


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
    rows_by_id: tuple[PyTree, jax.Array] | None = None,
    rows_split: bool = False,
) -> PyTree:
  """Streams sum_i weights[i] * fn(shared, client_i) without materialising the [C, ...] stack.

  With 'scan' or 'chunked' the memory is that of one client (or one chunk) whatever C is; across
  devices each device sums its share and one `psum` combines them.

  Args:
    fn, shared, per_client, strategy, chunk_size, mesh: as in `map_clients`.
    weights: [C] float32.
    rows_by_id: optional (table, ids): a table of rows (leaves [K, ...], e.g. the population) and
      the [C] int row of each client. Each client's row is read inside the client loop and `fn`
      receives (row_i, per_client_i), so no [C, ...] copy of the rows is made.
    rows_split: on a mesh, whether the table is split over the devices by rows (`shard_rows`: each
      holds K / D rows and fetches the rows its clients need from their owners) rather than whole on
      every device. Either way gives the same numbers; say how the table is placed, or XLA moves it
      to match every round.

  Returns:
    pytree like one client's output, float32 leaves (replicated across devices).
  """
  strategy = resolve_strategy(strategy)
  weights = jnp.asarray(weights, jnp.float32)
  table, per_client = (None, per_client) if rows_by_id is None else (rows_by_id[0], (rows_by_id[1], per_client))
  devices = num_mesh_clients(mesh)
  if devices == 1:
    read = None if table is None else functools.partial(_read_local, table)
    return _weighted_sum_local(fn, shared, per_client, weights, strategy, chunk_size, read)
  padded, padded_weights = _pad_leading((per_client, weights), devices)
  split = table is not None and rows_split
  if split and cohort_size(table) % devices:
    raise ValueError(f'A table split over {devices} devices needs a multiple of {devices} rows, not '
                     f'{cohort_size(table)}: place it with placement.shard_rows.')

  def body(shared, clients, w, table):
    shared = _device_varying(shared)
    if split:
      partial = _weighted_sum_fetched(fn, shared, clients, w, strategy, chunk_size, table)
    else:
      read = None if table is None else functools.partial(_read_local, table)
      partial = _weighted_sum_local(fn, shared, clients, w, strategy, chunk_size, read)
    return jax.lax.psum(partial, CLIENT_AXIS)

  table_spec = P(CLIENT_AXIS) if split else P()
  return jax.shard_map(body, mesh=mesh, in_specs=(P(), P(CLIENT_AXIS), P(CLIENT_AXIS), table_spec),
                       out_specs=P())(shared, padded, padded_weights, table)


def sum_clients(
    fn: Callable[[PyTree, PyTree], PyTree],
    shared: PyTree,
    per_client: PyTree,
    strategy: str = 'auto',
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    rows_by_id: tuple[PyTree, jax.Array] | None = None,
    rows_split: bool = False,
) -> PyTree:
  """Streams sum_i fn(shared, client_i) (float32) without materialising the [C, ...] stack.

  Like `weighted_sum_clients` with unit weights, but on one device it needs no [C] weight vector
  at all: the client function weighs (and masks) its own output, e.g. FedAvg's fused
  transform-and-aggregate client. Padding clients (multi-device) count 0.

  Args:
    fn, shared, per_client, strategy, chunk_size, mesh, rows_by_id, rows_split: as in
      `weighted_sum_clients`.

  Returns:
    pytree like one client's output, float32 leaves (replicated across devices).
  """
  strategy = resolve_strategy(strategy)
  if num_mesh_clients(mesh) == 1:
    if rows_by_id is None:
      return _weighted_sum_local(fn, shared, per_client, None, strategy, chunk_size)
    read = functools.partial(_read_local, rows_by_id[0])
    return _weighted_sum_local(fn, shared, (rows_by_id[1], per_client), None, strategy, chunk_size, read)
  ones = jnp.ones((cohort_size(per_client if rows_by_id is None else rows_by_id[1]),), jnp.float32)
  return weighted_sum_clients(fn, shared, per_client, ones, strategy, chunk_size, mesh, rows_by_id, rows_split)


def usable_cores() -> int:
  """Cores this process may run on (its CPU affinity: taskset, cgroups, containers); at least 1.

  `os.cpu_count()` counts the machine's cores, not the ones this process is allowed to use.
  """
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):  # no affinity on this platform (macOS): every core
    return max(1, os.cpu_count() or 1)


def default_num_devices() -> int:
  """What config.num_devices = 0 (auto) means here.

  On CPU, min(CPU devices, usable cores): each device runs its share of the cohort on its own core,
  and devices beyond the cores (fake test devices) add per-device overhead but no speed. On an
  accelerator, or in a multi-process run, every device.
  """
  available = jax.device_count()
  if jax.default_backend() != 'cpu' or jax.process_count() > 1:
    return available
  return max(1, min(available, usable_cores()))


def client_mesh(num_devices: int | None = None) -> Mesh | None:
  """A 1-D mesh over the first `num_devices` devices, axis 'clients'.

  Args:
    num_devices: config.num_devices; None or 0 is auto (`default_num_devices`: every usable core on
      CPU, every device on an accelerator).

  Returns:
    The mesh, or None for a single device (callers then take the plain single-device path).
  """
  if num_devices is not None and (isinstance(num_devices, bool) or int(num_devices) != num_devices
                                  or num_devices < 0):
    raise ValueError(f'config.num_devices={num_devices!r} must be an integer >= 0 (0: every usable core on CPU, '
                     'every device on an accelerator).')
  available = jax.device_count()
  num_devices = int(num_devices or default_num_devices())
  if num_devices > available:
    raise ValueError(f'config.num_devices={num_devices} exceeds the {available} available devices '
                     '(on CPU, experiments.run creates config.num_devices devices at start-up; a process that '
                     'started JAX first must set XLA_FLAGS=--xla_force_host_platform_device_count=N).')
  if num_devices == 1:
    return None
  return jax.make_mesh((num_devices,), (CLIENT_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:num_devices])


# ----------------------------------------------------------------------------- memory budget


class ChunkChoice(NamedTuple):
  """The chunk picked for a memory budget, and the fit it came from.

  Attributes:
    chunk_size: clients per chunk.
    temp_bytes: XLA temporary bytes measured for that chunk (estimated on the fallback path).
    intercept, slope: the linear model temp(k) ~ intercept + slope * k, bytes and bytes per client.
    measured: False when the backend had no memory analysis and the fallback estimate was used.
  """

  chunk_size: int
  temp_bytes: int
  intercept: float
  slope: float
  measured: bool


def compiled_temp_bytes(fn: Callable, *args) -> int | None:
  """XLA's temporary (working) bytes of `jax.jit(fn)` compiled for `args`; None where unavailable.

  Args:
    fn: function to compile.
    *args: arrays or `jax.ShapeDtypeStruct`s (nothing is allocated or run).

  Returns:
    `compile().memory_analysis().temp_size_in_bytes`, or None when the backend gives no analysis.
  """
  compiled = jax.jit(fn).lower(*args).compile()  # a compile error is the caller's, not "no analysis"
  try:
    analysis = compiled.memory_analysis()
  except (NotImplementedError, jax.errors.JaxRuntimeError):  # backends without memory analysis
    return None
  if analysis is None or getattr(analysis, 'temp_size_in_bytes', None) is None:
    return None
  return int(analysis.temp_size_in_bytes)


def pick_chunk_size(temp_bytes: Callable[[int], int | None], budget_bytes: int, max_chunk: int,
                    fallback_bytes_per_client: int | None = None, field: str = 'config.memory_budget_mb',
                    hint: str = '') -> ChunkChoice:
  """The largest chunk k <= max_chunk whose temporary memory temp_bytes(k) fits budget_bytes.

  Measures k = 1 and k = 4, fits temp(k) ~ a + b k, predicts the largest fitting k and checks it
  by measuring; if XLA's memory is not quite linear in k it refits between the nearest measured
  points below and above the budget (at most 6 more compilations). The answer is always a chunk
  whose measured memory fits.

  Fallback: when `temp_bytes` returns None (no memory analysis on this backend) the model is
  temp(k) = k * fallback_bytes_per_client (the caller's estimate of one client's working set);
  without that estimate a ValueError asks for an explicit chunk size.

  Args:
    temp_bytes: k -> bytes of the compiled program with chunk k (None if unknown).
    budget_bytes: the budget.
    max_chunk: largest useful chunk (the per-device cohort size).
    fallback_bytes_per_client: see Fallback.
    field: the config field named in errors.
    hint: appended to the error when even chunk 1 does not fit.

  Returns:
    ChunkChoice.
  """
  if max_chunk < 1:
    raise ValueError(f'max_chunk={max_chunk} must be >= 1.')
  budget_mb = budget_bytes / 2 ** 20
  first = temp_bytes(1)
  if first is None:
    if not fallback_bytes_per_client:
      raise ValueError(f'{field}={budget_mb:g}: this backend ({jax.default_backend()}) reports no compiled memory; '
                       'set config.chunk_size explicitly.')
    per_client = int(fallback_bytes_per_client)
    k = min(max_chunk, budget_bytes // per_client)
    if k < 1:
      raise ValueError(f'{field}={budget_mb:g} is below the estimated {per_client / 2**20:.2f} MiB of one client. '
                       + hint)
    return ChunkChoice(int(k), int(k * per_client), 0.0, float(per_client), False)
  if first > budget_bytes:
    raise ValueError(f'{field}={budget_mb:g}: even chunk_size=1 needs {first / 2**20:.2f} MiB of XLA temporary '
                     f'memory; raise the budget. ' + hint)
  if max_chunk == 1:
    return ChunkChoice(1, first, float(first), 0.0, True)
  probe = min(max_chunk, 4)
  points = {1: first, probe: temp_bytes(probe)}
  for _ in range(6):
    fits = [k for k, t in points.items() if t <= budget_bytes]
    over = [k for k, t in points.items() if t > budget_bytes]
    best, above = max(fits), (min(over) if over else max_chunk + 1)
    if above == best + 1:
      break
    # Secant between the two nearest measured points around the budget (the line through 1 and
    # the largest point while nothing has failed yet), kept strictly inside (best, above).
    low, high = (best, above) if over else (1, max(points))
    slope = (points[high] - points[low]) / (high - low)
    guess = above - 1 if slope <= 0 else int(low + (budget_bytes - points[low]) // slope)
    guess = min(max(guess, best + 1), above - 1)
    if guess in points:
      break
    points[guess] = temp_bytes(guess)
  best = max(k for k, t in points.items() if t <= budget_bytes)
  top = max(points)
  slope = (points[top] - points[1]) / max(top - 1, 1)
  return ChunkChoice(best, points[best], float(points[1] - slope), float(slope), True)


def chunk_size_for_budget(fn: Callable[[PyTree, PyTree], PyTree], shared: PyTree, one_client: PyTree,
                          budget_bytes: int, max_chunk: int, field: str = 'config.memory_budget_mb') -> ChunkChoice:
  """The largest chunk whose compiled streaming sum of `fn` fits `budget_bytes` of XLA temp memory.

  Compiles (never runs) `sum_clients(fn, shared, cohort, 'chunked', k)` over a cohort of 2k clients
  shaped like `one_client` (two chunks, so the loop is real) for a few k; see `pick_chunk_size`.
  The fallback without memory analysis estimates one client as its input bytes plus three times
  its output bytes (the output, the running sum and a gradient-sized intermediate).

  Args:
    fn: per-client function, as in `map_clients`.
    shared: arrays or ShapeDtypeStructs given to every client.
    one_client: one client's inputs (leaves [...]), arrays or ShapeDtypeStructs.
    budget_bytes: the budget.
    max_chunk: largest chunk to consider (the per-device cohort size).
    field: config field named in errors.

  Returns:
    ChunkChoice.
  """
  spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
  shared = jax.tree.map(spec, shared)
  one_client = jax.tree.map(spec, one_client)

  def measure(k):
    cohort = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2 * k,) + s.shape, s.dtype), one_client)
    return compiled_temp_bytes(lambda s, c: sum_clients(fn, s, c, 'chunked', k), shared, cohort)

  out = jax.eval_shape(fn, shared, one_client)
  nbytes = lambda tree: sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(tree))
  return pick_chunk_size(measure, budget_bytes, max_chunk, nbytes(one_client) + 3 * nbytes(out), field)
