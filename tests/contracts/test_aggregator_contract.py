"""The Aggregator contract, run over every aggregator builder (found by `registered.cases`): it jits,
keeps shapes and dtypes, ignores the order of clients, does not retrace on a second call, ignores
absent (weight 0) clients, agrees with its streaming form when it has one, gives the same answer on
1 and 8 devices, and its traits (`needs_honest_majority`, `max_byzantine`) agree with what it does.

A new aggregator is covered by being a public function annotated `-> Aggregator` in
fedjax_lab/aggregators/ (or privacy/); see tests/contracts/registered.py.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab import aggregators
from fedjax_lab.cohort import make_context
from tests.contracts import registered

NUM_CLIENTS = registered.NUM_CLIENTS
PARAMS = {'dense': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros((2,))}, 'scale': jnp.zeros(())}
AGGREGATORS = registered.cases('Aggregator')
BUILDERS = registered.builders('Aggregator')


def _updates(seed, num_clients=NUM_CLIENTS, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: jnp.asarray(rng.normal(size=(num_clients,) + p.shape), dtype), PARAMS)


def _weights(seed, num_clients=NUM_CLIENTS):
  w = np.random.default_rng(seed + 100).integers(1, 10, num_clients).astype(np.float32)
  w[[1, 6]] = 0  # two absent clients
  return w


def _run(name, updates, weights, mesh=None, jitted=None):
  agg = AGGREGATORS[name]()
  ctx = make_context(weights, jax.random.key(0), PARAMS)
  state = agg.init(PARAMS)
  if mesh is not None:
    clients, replicated = NamedSharding(mesh, P('clients')), NamedSharding(mesh, P())
    updates = jax.device_put(updates, clients)
    ctx = jax.device_put(ctx, ctx._replace(
        weights=clients, client_ids=clients, byzantine=clients, rng=replicated,
        params=jax.tree.map(lambda _: replicated, PARAMS), round=replicated))
    state = jax.device_put(state, jax.tree.map(lambda _: replicated, state))
  return (jitted or jax.jit(agg.aggregate))(updates, state, ctx)


def _close(a, b, tol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol),
               a, b)


def test_every_registered_aggregator_is_covered():
  covered = set(BUILDERS.values())
  for name, builder in aggregators.ROBUST_AGGREGATORS.items():
    assert builder in covered, f'registry entry {name!r} is not a builder the contract tests find'
  assert len(AGGREGATORS) >= len(aggregators.ROBUST_AGGREGATORS)


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_contract(name):
  agg = AGGREGATORS[name]()
  traces = []

  def aggregate(updates, state, ctx):
    traces.append(1)
    return agg.aggregate(updates, state, ctx)

  jitted = jax.jit(aggregate)
  updates, weights = _updates(0), _weights(0)
  state = agg.init(PARAMS)
  ctx = make_context(weights, jax.random.key(0), PARAMS)
  out, new_state = jitted(updates, state, ctx)

  # Shapes and dtypes: one client's leaves; the state keeps its structure.
  chex_shapes = jax.tree.map(lambda u: (u.shape[1:], u.dtype), updates)
  assert jax.tree.map(lambda o: (o.shape, o.dtype), out) == chex_shapes
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert jax.tree.map(lambda s: (s.shape, s.dtype), new_state) == jax.tree.map(lambda s: (s.shape, s.dtype), state)

  # A second call with new values and new weights does not retrace.
  jitted(_updates(1), state, make_context(_weights(1), jax.random.key(1), PARAMS, round_index=1))
  assert len(traces) == 1

  # Permutation invariance: shuffling the clients (updates and weights together) changes nothing.
  perm = np.random.default_rng(5).permutation(NUM_CLIENTS)
  permuted, _ = jitted(jax.tree.map(lambda u: u[perm], updates), state,
                       make_context(weights[perm], jax.random.key(0), PARAMS))
  _close(permuted, out)

  # Absent clients are excluded, not treated as zeros: replacing their rows by anything
  # (zeros or huge values) leaves the result unchanged.
  absent = weights == 0
  for fill in (0.0, 1e4):
    filled = jax.tree.map(lambda u: jnp.where(absent.reshape((-1,) + (1,) * (u.ndim - 1)), fill, u), updates)
    _close(jitted(filled, state, ctx)[0], out)


@pytest.mark.parametrize('name', [n for n in AGGREGATORS if AGGREGATORS[n]().streaming])
def test_streaming_form_equals_stacked(name):
  agg = AGGREGATORS[name]()
  updates, weights = _updates(4), _weights(4)
  state = agg.init(PARAMS)
  ctx = make_context(weights, jax.random.key(3), PARAMS)
  stacked = jax.jit(agg.aggregate)(updates, state, ctx)
  streamed = jax.jit(lambda u, s, c: aggregators.streamed_aggregate(agg.streaming_form, u, s, c))(
      updates, state, ctx)
  _close(streamed, stacked)


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_keeps_low_precision_dtype(name):
  updates = _updates(2, dtype=jnp.bfloat16)
  out, _ = _run(name, updates, _weights(2))
  assert jax.tree.map(lambda o: o.dtype, out) == jax.tree.map(lambda u: u.dtype, updates)


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_same_on_one_and_eight_devices(name):
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  updates, weights = _updates(3), _weights(3)
  one = _run(name, updates, weights)
  eight = _run(name, updates, weights, jax.make_mesh((8,), ('clients',)))
  _close(one, eight)


@pytest.mark.parametrize('name', list(AGGREGATORS))
def test_traits_are_consistent(name):
  agg = AGGREGATORS[name]()
  assert isinstance(agg.needs_honest_majority, bool)
  assert agg.streaming == (agg.streaming_form is not None)
  if agg.max_byzantine is None:
    assert not agg.needs_honest_majority, 'an honest-majority rule must state max_byzantine(n)'
    return
  for n in range(1, 3 * NUM_CLIENTS):
    tolerated = agg.max_byzantine(n)
    assert isinstance(tolerated, int) and tolerated < n
    if agg.needs_honest_majority:
      assert 2 * tolerated < n, f'max_byzantine({n})={tolerated} is not a minority'


@pytest.mark.parametrize('name', [n for n, b in BUILDERS.items() if 'num_clients' in inspect.signature(b).parameters])
def test_max_byzantine_matches_the_construction_check(name):
  """A cohort size is refused at construction exactly when max_byzantine says the rule breaks down."""
  builder = BUILDERS[name]
  required = {p: registered.ARGUMENTS[p] for p, v in inspect.signature(builder).parameters.items()
              if v.default is inspect.Parameter.empty}
  required.update(registered.CHOSEN.get(name, {}))
  agg = builder(**required)
  assert agg.max_byzantine is not None
  for n in range(1, 3 * NUM_CLIENTS):
    try:
      builder(**required, num_clients=n)
      refused = False
    except ValueError:
      refused = True
    assert refused == (agg.max_byzantine(n) < 0), f'num_clients={n}: max_byzantine={agg.max_byzantine(n)}'
