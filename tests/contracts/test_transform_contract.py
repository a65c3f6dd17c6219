"""The Transform contract, run over every transform and update attack builder (found by
`registered.cases`): it jits, keeps the stacked shapes and dtypes ([C, ...] in, [C, ...] out),
keeps its state's structure, does not retrace on a second call, and, when it has a per-client
form, the stacked update equals that form applied to each client alone (updates and state).

A new transform or attack is covered by being a public function annotated `-> Transform` in
fedjax_lab/transforms/, attacks/ or privacy/; see tests/contracts/registered.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import attacks
from fedjax_lab.cohort import CLIENT_CONTEXT_AXES, client_contexts, make_context
from fedjax_lab.transforms import preaggregation
from fedjax_lab.transforms.base import one_client_shapes
from tests.contracts import registered

NUM_CLIENTS = registered.NUM_CLIENTS
PARAMS = {'dense': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros((2,))}, 'scale': jnp.zeros(())}
TRANSFORMS = registered.cases('Transform')


def _inputs(seed, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  updates = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(NUM_CLIENTS,) + p.shape), dtype), PARAMS)
  weights = rng.integers(1, 10, NUM_CLIENTS).astype(np.float32)
  weights[[1, 6]] = 0  # two absent clients
  byzantine = np.zeros(NUM_CLIENTS, bool)
  byzantine[[0, 3, 6]] = True  # attacks act on these
  ctx = make_context(weights, jax.random.key(seed), PARAMS, byzantine=byzantine, round_index=seed)
  return updates, ctx


def _spec(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def test_every_registered_transform_is_covered():
  covered = set(registered.builders('Transform').values())
  registries = {**attacks.UPDATE_ATTACKS, **preaggregation.PREAGGREGATORS}
  for name, builder in registries.items():
    assert builder in covered, f'registry entry {name!r} is not a builder the contract tests find'


@pytest.mark.parametrize('name', list(TRANSFORMS))
def test_contract(name):
  transform = TRANSFORMS[name]()
  traces = []

  def update(updates, state, ctx):
    traces.append(1)
    return transform.update(updates, state, ctx)

  jitted = jax.jit(update)
  updates, ctx = _inputs(0)
  state = transform.init(PARAMS)
  out, new_state = jitted(updates, state, ctx)
  assert _spec(out) == _spec(updates)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert _spec(new_state) == _spec(state)
  assert all(np.all(np.isfinite(np.asarray(leaf, np.float32))) for leaf in jax.tree.leaves(out))

  second, _ = _inputs(1)
  jitted(second, new_state, _inputs(1)[1])
  assert len(traces) == 1


@pytest.mark.parametrize('name', list(TRANSFORMS))
def test_keeps_low_precision_dtype(name):
  transform = TRANSFORMS[name]()
  updates, ctx = _inputs(2, dtype=jnp.bfloat16)
  out, _ = jax.jit(transform.update)(updates, transform.init(PARAMS), ctx)
  assert _spec(out) == _spec(updates)


@pytest.mark.parametrize('name', [n for n in TRANSFORMS if TRANSFORMS[n]().per_client is not None])
def test_per_client_form_equals_stacked(name):
  transform = TRANSFORMS[name]()
  updates, ctx = _inputs(3)
  state = transform.init(PARAMS)
  stacked, stacked_state = jax.jit(transform.update)(updates, state, ctx)

  def per_client(updates, state, ctx):
    apply = jax.vmap(transform.per_client.apply, in_axes=(0, CLIENT_CONTEXT_AXES))
    return (apply(updates, client_contexts(ctx)),
            transform.per_client.next_state(state, ctx, one_client_shapes(updates)))

  one_by_one, one_by_one_state = jax.jit(per_client)(updates, state, ctx)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6),
               (one_by_one, one_by_one_state), (stacked, stacked_state))
