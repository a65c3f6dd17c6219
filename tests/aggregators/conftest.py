"""Fixtures for the robust-aggregator tests: random cohorts (with ties, absent clients, equal and
unequal weights) and placement of a cohort on a 1- or 8-device 'clients' mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab.transforms import make_context

NUM_CLIENTS = 16  # a multiple of 8, so the cohort splits evenly over 8 fake devices


def make_cohort(seed: int, ties: bool, weights: str, num_clients: int = NUM_CLIENTS):
  """Random updates {'w': [C, 3, 2], 'b': [C, 4]} float32 and weights [C] with 3 absent clients.

  ties=True draws small integers, so coordinates (and distances) tie often.
  weights: 'equal' (1 for present clients) or 'unequal' (integers 1..9, like example counts).
  """
  rng = np.random.default_rng(seed)
  draw = ((lambda shape: rng.integers(-2, 3, shape).astype(np.float32)) if ties
          else (lambda shape: rng.normal(size=shape).astype(np.float32)))
  updates = {'w': draw((num_clients, 3, 2)), 'b': draw((num_clients, 4))}
  w = np.ones(num_clients, np.float32) if weights == 'equal' else rng.integers(1, 10, num_clients).astype(np.float32)
  absent = rng.choice(num_clients, 3, replace=False)
  w[absent] = 0.0
  # Absent clients carry garbage that would wreck any statistic that counted them.
  for leaf in updates.values():
    leaf[absent] = 1e3
  return updates, w


# Ties with equal weights, ties with unequal weights, continuous values with unequal weights.
CASES = [(1, True, 'equal'), (3, True, 'unequal'), (2, False, 'unequal')]


@pytest.fixture(params=CASES, ids=['ties-equal', 'ties-unequal', 'cont-unequal'])
def cohort(request):
  seed, ties, weights = request.param
  return make_cohort(seed, ties, weights)


@pytest.fixture(params=[1, 8], ids=['1dev', '8dev'])
def place(request):
  """Returns place(updates, weights) -> (updates, ctx) on a mesh of 1 or 8 devices."""
  count = request.param
  if jax.device_count() < count:
    pytest.skip(f'needs {count} devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  mesh = jax.make_mesh((count,), ('clients',), devices=jax.devices()[:count])
  clients, replicated = NamedSharding(mesh, P('clients')), NamedSharding(mesh, P())

  def place_fn(updates, weights, rng_seed=0, byzantine=None):
    ctx = make_context(weights, jax.random.key(rng_seed), None, byzantine=byzantine)
    ctx = ctx._replace(
        weights=jax.device_put(ctx.weights, clients),
        client_ids=jax.device_put(ctx.client_ids, clients),
        byzantine=jax.device_put(ctx.byzantine, clients),
        rng=jax.device_put(ctx.rng, replicated),
        round=jax.device_put(ctx.round, replicated))
    return jax.device_put(jax.tree.map(jnp.asarray, updates), clients), ctx

  place_fn.mesh = mesh
  place_fn.replicated = replicated
  return place_fn


@pytest.fixture
def cohort_factory():
  """make_cohort itself, for tests that need several cohorts."""
  return make_cohort
