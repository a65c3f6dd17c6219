"""Partitioners: deterministic functions from labels (or a count) to K client index arrays.

Every partitioner returns `client_indices`, a list of K int64 arrays that together hold every
example index 0..N-1 exactly once; `pack_clients(x, y, client_indices)` turns them into padded
`FederatedData`. The split depends only on the arguments and `seed` (a `np.random.default_rng`
stream), never on numpy's global RNG. Within a client, indices are in random order (so a client
whose local loop walks its rows in order does not see its classes one after another), except for
`natural`, which keeps the file order.

  iid                 uniform random split into near-equal parts.
  dirichlet           label skew (Hsu et al. 2019): each class is split by Dirichlet(alpha) shares.
  shards              McMahan et al. (2017): sort by label, cut into equal shards, deal shards.
  classes_per_client  exactly k distinct classes per client (Li et al. 2022, "#C=k").
  quantity_skew       unequal client sizes (log-normal or power law), labels IID.
  natural             one client per value of a client-id column (writers, users, devices).

Arguments are validated before any work; errors name the config field (`config.data.<name>`) that
holds the argument, because the runner passes `config.data` through `load_dataset` to here.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import numpy as np

ClientIndices = list[np.ndarray]


# ---------------------------------------------------------------------------------------------
# Validation helpers.


def _as_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'labels must be 1-D [N]; got shape {labels.shape}.')
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integer class ids for a label-based partition; got dtype {labels.dtype}. '
                     "Use config.data.partition='iid' or 'quantity_skew' for regression targets.")
  if labels.size and labels.min() < 0:
    raise ValueError(f'labels must be non-negative class ids; found {labels.min()}.')
  return labels


def _check_num_clients(num_clients: int, num_examples: int) -> None:
  if int(num_clients) != num_clients or num_clients < 1:
    raise ValueError(f'config.data.num_clients={num_clients} must be an integer >= 1.')
  if num_clients > num_examples:
    raise ValueError(f'config.data.num_clients={num_clients} exceeds the {num_examples} training examples, so some '
                     'client would be empty; lower config.data.num_clients.')


def _check_min_size(min_size: int, num_clients: int, num_examples: int) -> None:
  if int(min_size) != min_size or min_size < 0:
    raise ValueError(f'config.data.min_size={min_size} must be an integer >= 0.')
  if num_clients * min_size > num_examples:
    raise ValueError(f'config.data.min_size={min_size} times config.data.num_clients={num_clients} exceeds the '
                     f'{num_examples} training examples; lower min_size or num_clients.')


def _shuffled(rng: np.random.Generator, parts: Sequence[np.ndarray]) -> ClientIndices:
  return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in parts]


# ---------------------------------------------------------------------------------------------
# Partitioners.


def iid(num_examples: int, num_clients: int, seed: int) -> ClientIndices:
  """Uniform random split; client sizes differ by at most one.

  Args:
    num_examples: N, the number of examples.
    num_clients: K.
    seed: seed of the split.

  Returns:
    K int64 index arrays, sizes floor(N/K) or ceil(N/K).
  """
  _check_num_clients(num_clients, num_examples)
  order = np.random.default_rng(seed).permutation(num_examples)
  return [part.astype(np.int64) for part in np.array_split(order, num_clients)]


def dirichlet(labels, num_clients: int, alpha: float, seed: int, min_size: int = 1,
              max_tries: int = 1000) -> ClientIndices:
  """Label skew: each class's examples are split among clients by Dirichlet(alpha) shares.

  For every class c a share vector p_c ~ Dir(alpha 1_K) is drawn and the class's (shuffled)
  examples are cut at the cumulative shares. Small alpha (0.1) gives clients dominated by one or two
  classes; large alpha (100) approaches an IID split. The whole draw is repeated until every client
  holds at least `min_size` examples (as in Hsu et al. 2019 and the NIID-Bench code).

  Args:
    labels: [N] int class ids.
    num_clients: K.
    alpha: Dirichlet concentration, > 0 (`config.data.alpha`).
    seed: seed of the split.
    min_size: every client gets at least this many examples (`config.data.min_size`). The default 1
      only forbids empty clients: NIID-Bench's 10 is out of reach for alpha=0.1 with ~40 examples
      per client (almost no Dirichlet draw gives every client 10 examples).
    max_tries: how many full draws to attempt before giving up.

  Returns:
    K int64 index arrays.
  """
  labels = _as_labels(labels)
  num_examples = labels.shape[0]
  _check_num_clients(num_clients, num_examples)
  if not alpha > 0:
    raise ValueError(f'config.data.alpha={alpha} must be > 0 (0.1: strong label skew, 100: nearly IID).')
  _check_min_size(min_size, num_clients, num_examples)
  rng = np.random.default_rng(seed)
  by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  sizes = np.zeros(num_clients, np.int64)
  for _ in range(max_tries):
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for members in by_class:
      members = rng.permutation(members)
      shares = rng.dirichlet(np.full(num_clients, float(alpha)))
      cuts = np.floor(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
      for client, chunk in enumerate(np.split(members, cuts)):
        parts[client].append(chunk)
    sizes = np.array([sum(len(c) for c in p) for p in parts])
    if sizes.min() >= min_size:
      return _shuffled(rng, [np.concatenate(p) for p in parts])
  raise ValueError(f'dirichlet: no split with every client >= config.data.min_size={min_size} examples in '
                   f'{max_tries} draws (alpha={alpha}, num_clients={num_clients}, N={num_examples}; the last '
                   f'draw\'s smallest client had {sizes.min()}). Raise config.data.alpha, lower '
                   'config.data.min_size or config.data.num_clients.')


def shards(labels, num_clients: int, shards_per_client: int, seed: int) -> ClientIndices:
  """McMahan et al.'s pathological non-IID split: sort by label, cut equal shards, deal them.

  The examples are sorted by label (ties in random order), cut into num_clients * shards_per_client
  contiguous shards of near-equal size, and each client gets shards_per_client random shards. A shard
  that straddles a class boundary holds two classes, so a client has at most shards_per_client
  classes when every class size is a multiple of the shard size, and at most 2 * shards_per_client
  otherwise. Use `classes_per_client` for an exact class count.

  Args:
    labels: [N] int class ids.
    num_clients: K.
    shards_per_client: shards per client, >= 1 (McMahan et al. use 2 with K = 100 on MNIST).
    seed: seed of the split.

  Returns:
    K int64 index arrays.
  """
  labels = _as_labels(labels)
  num_examples = labels.shape[0]
  _check_num_clients(num_clients, num_examples)
  if int(shards_per_client) != shards_per_client or shards_per_client < 1:
    raise ValueError(f'config.data.shards_per_client={shards_per_client} must be an integer >= 1.')
  num_shards = num_clients * shards_per_client
  if num_shards > num_examples:
    raise ValueError(f'config.data.num_clients * config.data.shards_per_client = {num_shards} shards exceeds the '
                     f'{num_examples} training examples; lower one of them.')
  rng = np.random.default_rng(seed)
  order = rng.permutation(num_examples)
  order = order[np.argsort(labels[order], kind='stable')]
  pieces = np.array_split(order, num_shards)
  deal = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
  return _shuffled(rng, [np.concatenate([pieces[s] for s in row]) for row in deal])


def classes_per_client(labels, num_clients: int, k: int, seed: int) -> ClientIndices:
  """Exactly k distinct classes per client; each class is split evenly among its holders.

  Classes are assigned greedily: each client takes the k classes held by the fewest clients so far
  (ties broken at random), so holder counts differ by at most one across classes and every class has
  a holder when num_clients * k >= num_classes. Each class's shuffled examples are then split into
  near-equal parts among its holders.

  Args:
    labels: [N] int class ids (the classes are the distinct values present).
    num_clients: K.
    k: classes per client, 1 <= k <= num_classes (`config.data.k`).
    seed: seed of the split.

  Returns:
    K int64 index arrays; client i's labels take exactly k distinct values.
  """
  labels = _as_labels(labels)
  num_examples = labels.shape[0]
  _check_num_clients(num_clients, num_examples)
  classes, class_sizes = np.unique(labels, return_counts=True)
  num_classes = len(classes)
  if int(k) != k or not 1 <= k <= num_classes:
    raise ValueError(f'config.data.k={k} must be an integer in [1, {num_classes}] (the number of classes present).')
  if num_clients * k < num_classes:
    raise ValueError(f'config.data.num_clients * config.data.k = {num_clients * k} < {num_classes} classes, so some '
                     'class would belong to no client; raise num_clients or k.')
  rng = np.random.default_rng(seed)
  holders: list[list[int]] = [[] for _ in range(num_classes)]
  for client in range(num_clients):
    load = np.array([len(h) for h in holders])
    chosen = np.lexsort((rng.random(num_classes), load))[:k]  # fewest holders first, random ties
    for c in chosen:
      holders[c].append(client)
  short = [(int(classes[c]), int(class_sizes[c]), len(h)) for c, h in enumerate(holders) if class_sizes[c] < len(h)]
  if short:
    label, size, count = short[0]
    raise ValueError(f'class {label} has {size} examples but {count} clients must hold it; lower '
                     'config.data.num_clients or config.data.k.')
  parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
  for c, members in enumerate(holders):
    pieces = np.array_split(rng.permutation(np.flatnonzero(labels == classes[c])), len(members))
    for client, piece in zip(members, pieces):
      parts[client].append(piece)
  return _shuffled(rng, [np.concatenate(p) for p in parts])


def quantity_skew(num_examples: int, num_clients: int, seed: int, distribution: str = 'lognormal',
                  sigma: float = 1.0, exponent: float = 1.5, min_size: int = 1) -> ClientIndices:
  """Unequal client sizes with IID labels.

  Client weights w_k are drawn i.i.d. from LogNormal(0, sigma) ('lognormal') or from a Pareto law
  with tail index `exponent`, density ∝ w^-(exponent+1) on w >= 1 ('powerlaw'). Every client gets
  `min_size` examples and the remaining N - K * min_size are divided in proportion to w (largest
  remainders get the leftover units), then a random permutation of the examples is cut to those sizes.

  Args:
    num_examples: N.
    num_clients: K.
    seed: seed of the split.
    distribution: 'lognormal' or 'powerlaw' (`config.data.distribution`).
    sigma: log-normal shape, > 0 (`config.data.sigma`); larger is more unequal.
    exponent: power-law tail index, > 0 (`config.data.exponent`); smaller is more unequal.
    min_size: smallest client size (`config.data.min_size`).

  Returns:
    K int64 index arrays with the drawn sizes.
  """
  _check_num_clients(num_clients, num_examples)
  if distribution not in ('lognormal', 'powerlaw'):
    raise ValueError(f"config.data.distribution={distribution!r} must be 'lognormal' or 'powerlaw'.")
  if distribution == 'lognormal' and not sigma > 0:
    raise ValueError(f'config.data.sigma={sigma} must be > 0.')
  if distribution == 'powerlaw' and not exponent > 0:
    raise ValueError(f'config.data.exponent={exponent} must be > 0.')
  _check_min_size(min_size, num_clients, num_examples)
  rng = np.random.default_rng(seed)
  if distribution == 'lognormal':
    weights = rng.lognormal(0.0, sigma, num_clients)
  else:
    weights = rng.pareto(exponent, num_clients) + 1.0
  sizes = _apportion(num_examples - num_clients * min_size, weights) + min_size
  order = rng.permutation(num_examples)
  return [part.astype(np.int64) for part in np.split(order, np.cumsum(sizes)[:-1])]


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
  """Integer sizes summing to `total`, proportional to `weights` (largest-remainder rounding)."""
  exact = total * weights / weights.sum()
  sizes = np.floor(exact).astype(np.int64)
  leftover = total - int(sizes.sum())
  sizes[np.argsort(-(exact - sizes), kind='stable')[:leftover]] += 1
  return sizes


def natural(client_ids) -> ClientIndices:
  """One client per distinct value of `client_ids`, in sorted id order; rows keep their order.

  Args:
    client_ids: [N] ids (ints or strings) saying which client owns each example.

  Returns:
    K = len(unique(client_ids)) int64 index arrays; client i holds the rows with the i-th smallest id.
  """
  client_ids = np.asarray(client_ids)
  if client_ids.ndim != 1 or client_ids.size == 0:
    raise ValueError(f'client_ids must be a non-empty 1-D array [N]; got shape {client_ids.shape}.')
  _, inverse = np.unique(client_ids, return_inverse=True)
  order = np.argsort(inverse, kind='stable')
  counts = np.bincount(inverse)
  return [part.astype(np.int64) for part in np.split(order, np.cumsum(counts)[:-1])]


# ---------------------------------------------------------------------------------------------
# Registry.


def _natural_builder(labels, num_clients, seed, client_ids=None):
  del seed
  if client_ids is None:
    raise ValueError("config.data.partition='natural' needs client_ids (one id per example); only data sets "
                     'with writers/users (femnist, fedprox_synthetic) have them.')
  if len(client_ids) != len(labels):
    raise ValueError(f'client_ids has {len(client_ids)} entries but there are {len(labels)} examples.')
  parts = natural(client_ids)
  if num_clients is not None and num_clients != len(parts):
    raise ValueError(f'config.data.num_clients={num_clients} but the natural partition has {len(parts)} clients; '
                     'drop num_clients or set it to that number.')
  return parts


PARTITIONERS: dict[str, Callable[..., ClientIndices]] = {
    'iid': lambda labels, num_clients, seed: iid(len(labels), num_clients, seed),
    'dirichlet': lambda labels, num_clients, seed, alpha=0.5, min_size=1, max_tries=1000: dirichlet(
        labels, num_clients, alpha, seed, min_size=min_size, max_tries=max_tries),
    'shards': lambda labels, num_clients, seed, shards_per_client=2: shards(labels, num_clients,
                                                                           shards_per_client, seed),
    'classes_per_client': lambda labels, num_clients, seed, k=2: classes_per_client(labels, num_clients, k, seed),
    'quantity_skew': lambda labels, num_clients, seed, distribution='lognormal', sigma=1.0, exponent=1.5,
                     min_size=1: quantity_skew(len(labels), num_clients, seed, distribution, sigma, exponent,
                                               min_size),
    'natural': _natural_builder,
}


def _parameters(builder) -> list[str]:
  return [p for p in inspect.signature(builder).parameters if p not in ('labels', 'num_clients', 'seed')]


def partition(name: str, labels, num_clients: int, seed: int, **kwargs) -> ClientIndices:
  """Runs the partitioner `name` from PARTITIONERS.

  Keyword arguments that belong to another partitioner (e.g. `alpha` with `partition='iid'`) are
  ignored, so one config can switch partitions by changing `config.data.partition` alone; a keyword
  that no partitioner takes is an error (usually a typo).

  Args:
    name: a key of PARTITIONERS (`config.data.partition`).
    labels: [N] labels (used by the label-based partitioners; only the length for iid/quantity_skew).
    num_clients: K.
    seed: seed of the split.
    **kwargs: the partitioner's own arguments (alpha, min_size, shards_per_client, k, distribution,
      sigma, exponent, client_ids).

  Returns:
    K int64 index arrays covering every example exactly once.
  """
  if name not in PARTITIONERS:
    raise ValueError(f'config.data.partition={name!r} is not a partitioner; choose one of {sorted(PARTITIONERS)}.')
  known = {p for builder in PARTITIONERS.values() for p in _parameters(builder)}
  unknown = sorted(set(kwargs) - known)
  if unknown:
    raise ValueError(f'config.data.{unknown[0]} is not an argument of any partitioner (they take {sorted(known)}).')
  builder = PARTITIONERS[name]
  own = _parameters(builder)
  return builder(labels, num_clients, seed, **{k: v for k, v in kwargs.items() if k in own})


def label_histogram(labels, client_indices: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
  """Per-client class counts.

  Args:
    labels: [N] int class ids in [0, num_classes).
    client_indices: K index arrays.
    num_classes: C.

  Returns:
    [K, C] int64; entry (k, c) counts client k's examples of class c.
  """
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must lie in [0, {num_classes}); found [{labels.min()}, {labels.max()}].')
  return np.stack([np.bincount(labels[np.asarray(idx, np.int64)], minlength=num_classes)[:num_classes]
                   for idx in client_indices]).astype(np.int64)
