"""Cohort sampling: which clients train this round, who drops out, who is Byzantine.

Everything is a jit-friendly function of a PRNG key, so a whole run of rounds can be one
compiled `lax.scan` and the cohort changes without retracing.

A round's `RoundInputs` come in two forms:

  gathered  `data` holds the cohort's rows, leaves [C, M, ...] (`sample_round(..., gather=True)`,
            the host loader). Whatever needs the whole cohort at once reads this.
  lazy      `data` is None and `population` holds the whole training set, leaves [K, M, ...]
            (`sample_round(..., gather=False)`); a client's rows are read by id inside the client
            loop (`client_rows`, or `placement.sum_clients(..., rows_by_id=...)`, which also reads
            from a population split over devices), so no [C, M, ...] buffer exists and the round's
            memory does not grow with C. `materialize` turns lazy inputs into gathered ones (one
            gather), so code that needs gathered data calls it once and works with either form.

Two samplings (`config.sampling`), both drawn by `sample_cohort`:

  fixed_size  (default) C = clients_per_round distinct clients, uniformly without replacement.
  poisson     every client joins independently with probability q = clients_per_round / K, so
              the number of members is Binomial(K, q) with mean clients_per_round. A compiled
              round needs a fixed shape, so the cohort is an array of `capacity` slots
              (`poisson_capacity`: the smallest c with P(Binomial(K, q) > c) <=
              config.sampling_overflow_probability, default 1e-9): members first, the other
              slots are real clients with participation False (weight 0). If a round has more
              members than slots (probability <= the overflow probability), the extra members
              are dropped; a DP guarantee computed for exact Poisson sampling then holds with
              delta + rounds * overflow_probability. `participants` in the metrics counts each
              round's members (minus dropouts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from scipy import stats

from fedjax_lab.data.federated import FederatedData, gather_clients


class RoundInputs(NamedTuple):
  """One round's cohort, gathered or lazy (see the module docstring).

  Attributes:
    data: FederatedData of the cohort, x [C, M, ...], y [C, M], num_examples [C]; None when lazy.
    client_ids: [C] int32 global client ids.
    participation: [C] bool; False for a sampled client that dropped out (never reports).
    byzantine: [C] bool; True for clients an attack controls.
    population: None when gathered; when lazy, the whole FederatedData, leaves [K, ...], that
      `client_ids` index.
    arrival: None for a cohort round; for the simulated asynchronous server, the record of the
      arriving gradient (`fedjax_lab.algorithms.async_ps.Arrival`: the version it was computed on,
      its staleness weight, whether the server steps, the simulated time).
  """

  data: FederatedData | None
  client_ids: jax.Array
  participation: jax.Array
  byzantine: jax.Array
  population: FederatedData | None = None
  arrival: Any = None

  @property
  def is_lazy(self) -> bool:
    return self.data is None


def materialize(inputs: RoundInputs) -> RoundInputs:
  """Gathered inputs (leaves [C, ...], population None) from either form; gathered ones pass through.

  The one place where lazy inputs become a [C, M, ...] cohort: algorithms (or parts of one) that
  need the whole cohort at once, e.g. stacked aggregators, SCAFFOLD, data attacks, call it.
  """
  if not inputs.is_lazy:
    return inputs
  if inputs.population is None:
    raise ValueError('RoundInputs has neither data nor population.')
  return inputs._replace(data=gather_clients(inputs.population, inputs.client_ids), population=None)


def cohort_num_examples(inputs: RoundInputs) -> jax.Array:
  """[C] int32 examples of each sampled client, from either form (lazy: a [C] gather only)."""
  if inputs.is_lazy:
    return jnp.take(inputs.population.num_examples, inputs.client_ids, axis=0)
  return inputs.data.num_examples


def client_rows(population: FederatedData, client_id: jax.Array) -> FederatedData:
  """One client's rows of the population by its global id: leaves [M, ...] ([chunk, M, ...] under vmap).

  Called inside the client loop, so only one client's (or one chunk's) rows are ever copied.
  """
  return FederatedData(*(jax.lax.dynamic_index_in_dim(a, client_id, axis=0, keepdims=False)
                         for a in population))


def validate_sampling(num_clients: int, clients_per_round: int, dropout_rate: float = 0.0) -> None:
  """Raises ValueError, naming the config field, for an impossible cohort."""
  if clients_per_round < 1:
    raise ValueError(f'config.clients_per_round={clients_per_round} must be >= 1.')
  if clients_per_round > num_clients:
    raise ValueError(f'config.clients_per_round={clients_per_round} exceeds num_clients={num_clients}; '
                     'lower clients_per_round or raise config.data.num_clients.')
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f'config.dropout_rate={dropout_rate} must be in [0, 1).')


SAMPLINGS = ('fixed_size', 'poisson')
DEFAULT_OVERFLOW_PROBABILITY = 1e-9


def validate_cohort_sampling(sampling: str, overflow_probability: float = DEFAULT_OVERFLOW_PROBABILITY) -> None:
  """Raises ValueError naming config.sampling or config.sampling_overflow_probability."""
  if sampling not in SAMPLINGS:
    raise ValueError(f'config.sampling={sampling!r} is not a cohort sampling; choose one of {SAMPLINGS} '
                     "('poisson': each client joins independently with probability clients_per_round / "
                     'num_clients).')
  if not 0.0 < overflow_probability < 1.0:
    raise ValueError(f'config.sampling_overflow_probability={overflow_probability} must be in (0, 1) '
                     '(the chance that a Poisson round has more members than the cohort array holds).')


def poisson_capacity(num_clients: int, sampling_probability: float,
                     overflow_probability: float = DEFAULT_OVERFLOW_PROBABILITY) -> int:
  """Smallest cohort capacity c with P(Binomial(N, q) > c) <= overflow_probability (c <= N)."""
  if not 0 < sampling_probability <= 1:
    raise ValueError(f'sampling_probability={sampling_probability} must lie in (0, 1].')
  # isf is the smallest c with sf(c) <= p; the loop only guards against its floating-point edge.
  capacity = int(stats.binom.isf(overflow_probability, num_clients, sampling_probability))
  while capacity < num_clients and stats.binom.sf(capacity, num_clients, sampling_probability) > overflow_probability:
    capacity += 1
  return int(min(max(capacity, 1), num_clients))


def cohort_capacity(num_clients: int, clients_per_round: int, sampling: str = 'fixed_size',
                    overflow_probability: float = DEFAULT_OVERFLOW_PROBABILITY) -> int:
  """Length of a round's cohort arrays: clients_per_round (fixed_size) or `poisson_capacity` (poisson)."""
  validate_cohort_sampling(sampling, overflow_probability)
  if sampling == 'fixed_size':
    return clients_per_round
  return poisson_capacity(num_clients, clients_per_round / num_clients, overflow_probability)


def poisson_cohort(rng: jax.Array, num_clients: int, sampling_probability: float,
                   capacity: int) -> tuple[jax.Array, jax.Array]:
  """A Poisson-sampled cohort in a fixed-capacity array.

  Client k draws u_k ~ U[0, 1) and joins iff u_k < q, independently of the others. The members
  are exactly the clients with the smallest u, so the `capacity` smallest (in random order among
  themselves) hold every member first; `participation` marks them. Exact as long as the number
  of members does not exceed `capacity` (see `poisson_capacity`); beyond it the extra members
  are dropped.

  Args:
    rng: PRNG key of the round.
    num_clients: N.
    sampling_probability: q.
    capacity: array size of the cohort.

  Returns:
    (client_ids [capacity] int32 distinct, participation [capacity] bool).
  """
  if not 1 <= capacity <= num_clients:
    raise ValueError(f'capacity={capacity} must lie in [1, num_clients={num_clients}].')
  u = jax.random.uniform(rng, (num_clients,))
  neg_u, ids = jax.lax.top_k(-u, capacity)
  return ids.astype(jnp.int32), -neg_u < sampling_probability


def sample_client_ids(rng, num_clients: int, clients_per_round: int) -> jax.Array:
  """[C] int32 distinct ids drawn uniformly without replacement from range(num_clients)."""
  if clients_per_round == num_clients:
    return jnp.arange(num_clients, dtype=jnp.int32)
  return jax.random.choice(rng, num_clients, (clients_per_round,), replace=False).astype(jnp.int32)


def byzantine_mask(num_clients: int, fraction: float, seed: int = 0) -> jax.Array:
  """[K] bool marking round(fraction * K) clients chosen by `seed` as Byzantine (fixed for a run)."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'config.attack.fraction={fraction} must be in [0, 1).')
  count = int(round(fraction * num_clients))
  order = jax.random.permutation(jax.random.key(seed), num_clients)
  return jnp.zeros((num_clients,), bool).at[order[:count]].set(True)


class Cohort(NamedTuple):
  """Who takes part in a round, without their data: what `sample_cohort` draws.

  Attributes:
    client_ids: [C] int32 global client ids.
    participation: [C] bool; False for a sampled client that dropped out.
    byzantine: [C] bool; True for clients an attack controls.
  """

  client_ids: jax.Array
  participation: jax.Array
  byzantine: jax.Array


def sample_cohort(
    rng,
    num_clients: int,
    clients_per_round: int,
    dropout_rate: float = 0.0,
    byzantine: jax.Array | None = None,
    sampling: str = 'fixed_size',
    capacity: int | None = None,
) -> Cohort:
  """Draws a round's cohort (ids, dropouts, Byzantine flags) from its key; jit-friendly and tiny.

  This is the only place where a cohort is drawn, so the device path (`sample_round` inside a
  compiled scan) and the host path (`fedjax_lab.data.host`, which gathers the same ids from host
  memory) train the same clients.

  Args:
    rng: PRNG key of this round.
    num_clients: K (static).
    clients_per_round: C (static).
    dropout_rate: probability that a sampled client never reports.
    byzantine: optional [K] bool mask of Byzantine clients.
    sampling: 'fixed_size' or 'poisson' (static; see the module docstring).
    capacity: poisson only, the static cohort length (None: `cohort_capacity`'s default).

  Returns:
    Cohort with leaves [C] (fixed_size) or [capacity] (poisson: members first, participation
    False for the other slots).
  """
  sample_key, dropout_key = jax.random.split(rng)
  if sampling == 'poisson':
    if capacity is None:
      capacity = cohort_capacity(num_clients, clients_per_round, sampling)
    ids, members = poisson_cohort(sample_key, num_clients, clients_per_round / num_clients, capacity)
  else:
    validate_cohort_sampling(sampling)
    ids = sample_client_ids(sample_key, num_clients, clients_per_round)
    members = jnp.ones(ids.shape, bool)
  participation = members & (jax.random.uniform(dropout_key, ids.shape) >= dropout_rate)
  cohort_byzantine = (jnp.zeros(ids.shape, bool) if byzantine is None
                      else jnp.take(byzantine, ids))
  return Cohort(ids, participation, cohort_byzantine)


def sample_round(
    data: FederatedData,
    rng,
    clients_per_round: int,
    dropout_rate: float = 0.0,
    byzantine: jax.Array | None = None,
    gather: bool = True,
    sampling: str = 'fixed_size',
    capacity: int | None = None,
    num_clients: int | None = None,
) -> RoundInputs:
  """Samples a cohort and gathers its data (one gather per array), or leaves it lazy.

  Args:
    data: the federated training data, leaves [K, ...] (device arrays for use under jit).
    rng: PRNG key of this round.
    clients_per_round: C.
    dropout_rate: probability that a sampled client never reports.
    byzantine: optional [K] bool mask of Byzantine clients.
    gather: True: RoundInputs with data [C, ...]; False: lazy RoundInputs (data None, population
      `data`), for an algorithm that reads each client's rows inside its client loop. The cohort
      (ids, dropouts, Byzantine flags) is the same either way.
    sampling, capacity: as in `sample_cohort`.
    num_clients: K, the clients that can be sampled (ids 0..K-1); default every row of `data`. A
      population split over devices is padded with empty rows (`placement.shard_rows`), never sampled.

  Returns:
    RoundInputs with [C] (or [capacity]) leaves, gathered or lazy.
  """
  num_clients = data.num_examples.shape[0] if num_clients is None else num_clients
  cohort = sample_cohort(rng, num_clients, clients_per_round, dropout_rate, byzantine, sampling, capacity)
  if not gather:
    return RoundInputs(None, *cohort, population=data)
  return RoundInputs(gather_clients(data, cohort.client_ids), *cohort)
