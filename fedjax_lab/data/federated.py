"""Federated data as arrays: clients are the leading axis, padded to the largest client.

A federated data set is a `FederatedData` of three arrays:

  x:            [K, M, *feature_shape]  client k's examples in rows 0..num_examples[k]-1, zeros after.
  y:            [K, M]                  labels (int32) or regression targets (float32), zero-padded.
  num_examples: [K] int32               how many rows of client k are real.

Nothing about a client lives in a Python object, so sampling a cohort of C clients is one gather
(`gather_clients`) and a compiled round never retraces when the cohort changes.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.Array | np.ndarray


class FederatedData(NamedTuple):
  """Padded per-client arrays; see the module docstring for shapes."""

  x: ArrayLike
  y: ArrayLike
  num_examples: ArrayLike

  @property
  def num_clients(self) -> int:
    return int(self.num_examples.shape[0])

  @property
  def max_examples(self) -> int:
    return int(self.x.shape[1])

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape[2:])

  def mask(self) -> ArrayLike:
    """[K, M] bool: True where a row is a real example."""
    return example_mask(self.num_examples, self.max_examples)


class SplitFederatedData(FederatedData):
  """A FederatedData split by clients over a mesh (`placement.shard_rows`), padded with empty clients
  to a multiple of the device count. The type is the record of that placement: a client loop reading
  rows by id from it fetches them from their owners (`placement.sum_clients(rows_split=True)`)."""

  __slots__ = ()


class FederatedDataset(NamedTuple):
  """A federated training set with a centralized test set.

  Attributes:
    train: FederatedData, x [K, M, *input_shape] float32, y [K, M] (int32 labels, float32 targets).
    test_x: [N_test, *input_shape] float32.
    test_y: [N_test] int32 labels (float32 targets for regression).
    input_shape: shape of one example.
    num_classes: number of classes; 1 for regression.
    name: the data set's registry name.
    extras: data-set specific facts (e.g. `w_star` for regression, `client_ids` for natural ones).
  """

  train: FederatedData
  test_x: np.ndarray
  test_y: np.ndarray
  input_shape: tuple[int, ...]
  num_classes: int
  name: str
  extras: dict[str, Any]


def example_mask(num_examples: ArrayLike, max_examples: int) -> ArrayLike:
  """[..., M] bool mask from per-client counts [...]; works on numpy and jax arrays."""
  xp = jnp if isinstance(num_examples, jax.Array) else np
  return xp.arange(max_examples) < xp.asarray(num_examples)[..., None]


def pack_clients(
    x: np.ndarray,
    y: np.ndarray,
    client_indices: Sequence[np.ndarray],
    max_examples: int | None = None,
) -> FederatedData:
  """Packs a centralized data set into padded per-client arrays.

  Args:
    x: [N, *feature_shape] all examples.
    y: [N] labels or targets.
    client_indices: K integer arrays; client k owns rows `x[client_indices[k]]`, in that order.
    max_examples: pad every client to this many rows (default: the largest client). Must be at
      least the largest client's size; pass it to make several data sets share one shape.

  Returns:
    FederatedData with x [K, M, ...], y [K, M], num_examples [K] (numpy, host memory).
  """
  x = np.asarray(x)
  y = np.asarray(y)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f'x has {x.shape[0]} rows but y has {y.shape[0]}; they must match.')
  if len(client_indices) == 0:
    raise ValueError('client_indices is empty: a federated data set needs at least one client.')
  sizes = np.array([len(idx) for idx in client_indices], dtype=np.int32)
  largest = int(sizes.max())
  if max_examples is None:
    max_examples = max(largest, 1)
  if max_examples < largest:
    raise ValueError(f'max_examples={max_examples} is smaller than the largest client ({largest}).')
  num_clients = len(client_indices)
  packed_x = np.zeros((num_clients, max_examples) + x.shape[1:], dtype=x.dtype)
  packed_y = np.zeros((num_clients, max_examples) + y.shape[1:], dtype=y.dtype)
  for k, idx in enumerate(client_indices):
    idx = np.asarray(idx, dtype=np.int64)
    packed_x[k, : len(idx)] = x[idx]
    packed_y[k, : len(idx)] = y[idx]
  return FederatedData(packed_x, packed_y, sizes)


def unpack_clients(data: FederatedData) -> tuple[np.ndarray, np.ndarray]:
  """Concatenates the real rows of all clients: returns (x [N, ...], y [N])."""
  mask = np.asarray(data.mask())
  return np.asarray(data.x)[mask], np.asarray(data.y)[mask]


def gather_clients(data: FederatedData, client_ids: ArrayLike) -> FederatedData:
  """Selects clients `client_ids` [C] (one gather per array); jit-friendly."""
  xp = jnp if isinstance(client_ids, jax.Array) else np
  return FederatedData(*(xp.take(a, client_ids, axis=0) for a in data))


def to_device(data: FederatedData, sharding=None) -> FederatedData:
  """Moves a host FederatedData to the default device (or to `sharding`)."""
  return FederatedData(*(jax.device_put(a, sharding) for a in data))


def pad_clients(data: FederatedData, multiple: int) -> FederatedData:
  """Appends empty clients (num_examples 0) so that K is a multiple of `multiple`.

  Used to spread a cohort evenly over devices: empty clients get weight 0 everywhere.
  """
  k = data.num_examples.shape[0]
  extra = (-k) % multiple
  if extra == 0:
    return data
  xp = jnp if isinstance(data.x, jax.Array) else np
  pad = lambda a: xp.concatenate([a, xp.zeros((extra,) + a.shape[1:], a.dtype)], axis=0)
  return FederatedData(*(pad(a) for a in data))
