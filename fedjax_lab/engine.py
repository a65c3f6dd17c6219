"""The one round loop: every algorithm, study, benchmark and test runs rounds through this module.

A run is an `Algorithm` (`fedjax_lab.algorithms.base`) and a `Sampler` that draws each round's
`RoundInputs`:

  state, metrics = scan_rounds(algorithm, sampler, state, base_key, num_rounds)

runs `num_rounds` rounds, sampling included, as one `lax.scan` inside one `jax.jit`: no host
round-trip per round. The sampler's arrays are an argument of the compiled loop (never constants
baked into it), and the compiled loop is cached per (step, sampler kind, number of rounds), so a
second call with new data or a new state of the same shapes does not recompile.

Randomness: round r uses key = fold_in(base_key, r) where r = state.round, split into a sample key and a
step key (`round_keys`). The numbers of round r therefore depend only on the seed and r: not on how
the run is cut into blocks, resumed, or placed on devices.

Samplers:
  cohort_sampler        a server's cohort: clients_per_round clients (fixed size or Poisson), dropouts,
                        Byzantine flags; gathered or lazy (the algorithm's `lazy_inputs`).
  every_client_sampler  every client in order, every round (data-parallel workers, gossip nodes).
  async_ps.arrival_sampler  one arriving gradient per round, replaying a simulated schedule.

`step_rounds` is the same loop for inputs prepared on the host (host-resident data, prefetched one
round ahead): one jitted round per round, with the same keys, so both give the same numbers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData

# The engine sits below the algorithms (fedjax_lab.algorithms imports it): it only reads the `step`
# of an `fedjax_lab.algorithms.base.Algorithm`, so it does not import that module.
Algorithm = Any

PyTree = Any


class Sampler(NamedTuple):
  """How each round's inputs are drawn.

  Attributes:
    sample: `(data, round, key) -> RoundInputs`, pure and traceable; `round` is the [] int32 round
      index, `key` the round's sample key. A module-level function or one built once per run, so
      the compiled loop is reused.
    data: pytree of arrays the sampler reads (the population, a Byzantine mask, a schedule), passed
      to the compiled loop as an argument.
  """

  sample: Callable[[PyTree, jax.Array, jax.Array], sampling.RoundInputs]
  data: PyTree


def round_keys(base_key: jax.Array, round_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sample key, step key) of round `round_index`: split(fold_in(base_key, round_index))."""
  sample_key, step_key = jax.random.split(jax.random.fold_in(base_key, round_index))
  return sample_key, step_key


# ---------------------------------------------------------------------------------------------
# Samplers.


class CohortData(NamedTuple):
  """What a cohort sampler reads: the population (leaves [K, ...]) and the [K] Byzantine mask."""

  population: FederatedData
  byzantine: jax.Array


@functools.lru_cache(maxsize=None)
def _cohort_sample_fn(clients_per_round: int, dropout_rate: float, how: str, capacity: int | None,
                      gather: bool, num_clients: int) -> Callable:
  # Cached per static setting: equal settings give the same function, so the compiled loop is reused.
  def sample(data: CohortData, round_index, key):
    del round_index  # a cohort depends on the round only through its key
    return sampling.sample_round(data.population, key, clients_per_round, dropout_rate, data.byzantine,
                                 gather=gather, sampling=how, capacity=capacity, num_clients=num_clients)

  return sample


def cohort_sampler(population: FederatedData, clients_per_round: int, dropout_rate: float = 0.0,
                   byzantine: jax.Array | None = None, how: str = 'fixed_size', capacity: int | None = None,
                   gather: bool = True, num_clients: int | None = None) -> Sampler:
  """A server's cohort each round (`fedjax_lab.data.sampling.sample_round`).

  Args:
    population: FederatedData, leaves [K, ...] (device arrays: replicated on a mesh, or split over it
      by `placement.shard_rows` for an algorithm with `lazy_inputs`, which pads it to more rows).
    clients_per_round: C (static).
    dropout_rate: probability that a sampled client never reports (static).
    byzantine: optional [K] bool mask of the clients an attack controls (default: none).
    how: 'fixed_size' or 'poisson' (config.sampling).
    capacity: the cohort's array length under 'poisson' (`sampling.cohort_capacity`).
    gather: False for an algorithm with `lazy_inputs` (each client's rows are read by id).
    num_clients: K, the clients that can be sampled (default: every row of the population); set it
      when the population is padded with empty rows (`placement.shard_rows`).

  Returns:
    Sampler.
  """
  rows = int(population.num_examples.shape[0])
  num_clients = rows if num_clients is None else int(num_clients)
  if not 1 <= num_clients <= rows:
    raise ValueError(f'num_clients={num_clients} must be between 1 and the population\'s {rows} rows.')
  if byzantine is None:
    byzantine = jnp.zeros((num_clients,), bool)
  sampling.validate_sampling(num_clients, clients_per_round, dropout_rate)
  sampling.validate_cohort_sampling(how)
  if byzantine.shape[0] != num_clients:
    raise ValueError(f'The Byzantine mask has {byzantine.shape[0]} entries for {num_clients} clients.')
  return Sampler(_cohort_sample_fn(int(clients_per_round), float(dropout_rate), how,
                                   None if capacity is None else int(capacity), bool(gather), num_clients),
                 CohortData(population, byzantine))


def every_client_inputs(data: FederatedData) -> sampling.RoundInputs:
  """RoundInputs holding every client in order (ids 0..K-1), all reporting, none Byzantine."""
  num_clients = data.num_examples.shape[0]
  return sampling.RoundInputs(data, jnp.arange(num_clients, dtype=jnp.int32), jnp.ones((num_clients,), bool),
                              jnp.zeros((num_clients,), bool))


def _every_client_sample(data: FederatedData, round_index, key):
  del round_index, key
  return every_client_inputs(data)


def every_client_sampler(data: FederatedData) -> Sampler:
  """Every client (worker, node) in order, every round: data-parallel GD and gossip."""
  return Sampler(_every_client_sample, FederatedData(*data))


# ---------------------------------------------------------------------------------------------
# The loop.


def _scan(state, data, base_key, step, sample, num_rounds: int, evaluate):
  def one_round(state, _):
    sample_key, step_key = round_keys(base_key, state.round)
    return step(state, sample(data, state.round, sample_key), step_key)

  if evaluate is None:
    return jax.lax.scan(one_round, state, None, length=num_rounds)
  return _scan_evaluated(one_round, num_rounds, evaluate, state)


def _scan_evaluated(one_round, num_rounds, evaluate, state):
  eval_every, evaluate = evaluate

  def block(state, _):
    state, metrics = jax.lax.scan(one_round, state, None, length=eval_every)
    return state, (metrics, evaluate(state))

  state, (metrics, evaluated) = jax.lax.scan(block, state, None, length=num_rounds // eval_every)
  metrics = jax.tree.map(lambda m: m.reshape((num_rounds,) + m.shape[2:]), metrics)
  return state, (metrics, evaluated)


_STATIC = ('step', 'sample', 'num_rounds', 'evaluate')
_scan_jit = jax.jit(_scan, static_argnames=_STATIC)
_scan_jit_donating = jax.jit(_scan, static_argnames=_STATIC, donate_argnames=('state',))


def scan_rounds(algorithm: Algorithm, sampler: Sampler, state: PyTree, base_key: jax.Array, num_rounds: int,
                donate: bool = False, evaluate: tuple[int, Callable] | None = None):
  """Runs `num_rounds` rounds of `algorithm` from `state` as one compiled `lax.scan`.

  Args:
    algorithm: the Algorithm.
    sampler: draws each round's RoundInputs.
    state: the algorithm's state (from `algorithm.init` or a checkpoint); its `round` numbers the
      rounds, so a resumed run draws the same keys as an uninterrupted one.
    base_key: the run's key; round r uses `round_keys(base_key, r)`.
    num_rounds: rounds to run (static: one compilation per length).
    donate: let XLA reuse the state's buffers (the caller must not use `state` afterwards).
    evaluate: optional (eval_every, fn): `fn(state)` (a pytree of arrays, traced inside the loop) is
      computed after every `eval_every` rounds; num_rounds must be a multiple of eval_every. `fn` must
      be hashable and stable (a module-level function or one built once), since it keys the cache.

  Returns:
    (state, metrics with leaves [num_rounds]); with `evaluate`, (state, (metrics, evaluated with
    leaves [num_rounds // eval_every])).
  """
  num_rounds = int(num_rounds)
  if num_rounds < 1:
    raise ValueError(f'num_rounds={num_rounds} must be >= 1.')
  if evaluate is not None:
    eval_every = int(evaluate[0])
    if eval_every < 1 or num_rounds % eval_every:
      raise ValueError(f'eval_every={eval_every} must be >= 1 and divide num_rounds={num_rounds}.')
    evaluate = (eval_every, evaluate[1])
  run = _scan_jit_donating if donate else _scan_jit
  return run(state, sampler.data, base_key, step=algorithm.step, sample=sampler.sample, num_rounds=num_rounds,
             evaluate=evaluate)


def lower_rounds(algorithm: Algorithm, sampler: Sampler, state: PyTree, base_key: jax.Array, num_rounds: int,
                 donate: bool = False) -> jax.stages.Lowered:
  """The program `scan_rounds` would run, lowered but not run (state and data may be ShapeDtypeStructs).

  `.compile().memory_analysis()` gives a block's memory exactly as the runner compiles it
  (sampling and row reads included); benchmarks time `.compile()`'s result.
  """
  run = _scan_jit_donating if donate else _scan_jit
  return run.lower(state, sampler.data, base_key, step=algorithm.step, sample=sampler.sample,
                   num_rounds=int(num_rounds), evaluate=None)


@functools.partial(jax.jit, static_argnames=('step',), donate_argnames=('state',))
def _one_prepared_round(state, inputs, base_key, step):
  _, step_key = round_keys(base_key, state.round)  # the sample key was used where the inputs were drawn
  return step(state, inputs, step_key)


def step_rounds(algorithm: Algorithm, inputs: Iterator[sampling.RoundInputs], state: PyTree, base_key: jax.Array,
                num_rounds: int):
  """Runs `num_rounds` rounds on inputs prepared on the host (e.g. prefetched cohorts of host data).

  Each round is one jitted, state-donating call with the step key of `scan_rounds`, so when
  round r's inputs are the ones `cohort_sampler` would draw (the host loader draws them with
  `round_keys`' sample key) the numbers equal a scanned run's. Waits for round r - 1 after queueing
  round r: the device always has the next round queued, but at most two cohorts (plus the one being
  prefetched) are alive on it.

  Returns:
    (state, metrics with leaves [num_rounds], numpy).
  """
  per_round, previous = [], None
  for _ in range(int(num_rounds)):
    state, metrics = _one_prepared_round(state, next(inputs), base_key, step=algorithm.step)
    if previous is not None:
      jax.block_until_ready(previous)
    previous = metrics
    per_round.append(metrics)
  per_round = jax.device_get(per_round)
  return state, jax.tree.map(lambda *values: np.stack(values), *per_round)
