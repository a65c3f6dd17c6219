"""Placement strategies and device counts give the same numbers; streaming sums equal stacked ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.clients import placement


def _fn(shared, client):
  w, = shared
  x, scale = client
  # A per-client gradient-like computation that differentiates the shared value.
  grad = jax.grad(lambda v: jnp.sum(jnp.tanh(x @ v)) * scale)(w)
  return {'g': grad, 's': jnp.sum(x) * scale}


def _inputs(c=10):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(c, 3, 4)), jnp.float32)
  s = jnp.asarray(rng.uniform(size=(c,)), jnp.float32)
  return (w,), (x, s)


def _reference(shared, clients):
  x, s = clients
  return jax.vmap(lambda xi, si: _fn(shared, (xi, si)))(x, s)


@pytest.mark.parametrize('strategy', ['vmap', 'scan', 'chunked'])
@pytest.mark.parametrize('devices', [1, 8])
def test_map_clients_agrees_with_vmap(strategy, devices):
  shared, clients = _inputs()
  mesh = placement.client_mesh(devices)
  out = jax.jit(lambda s, c: placement.map_clients(_fn, s, c, strategy, chunk_size=3, mesh=mesh))(shared, clients)
  ref = _reference(shared, clients)
  np.testing.assert_allclose(out['g'], ref['g'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['s'], ref['s'], rtol=1e-5, atol=1e-6)
  assert out['g'].shape == (10, 4)


@pytest.mark.parametrize('strategy', ['vmap', 'scan', 'chunked'])
@pytest.mark.parametrize('devices', [1, 8])
def test_weighted_sum_agrees_with_stacked(strategy, devices):
  shared, clients = _inputs()
  weights = jnp.arange(10, dtype=jnp.float32)
  mesh = placement.client_mesh(devices)
  out = jax.jit(lambda s, c, w: placement.weighted_sum_clients(_fn, s, c, w, strategy, chunk_size=4, mesh=mesh))(
      shared, clients, weights)
  ref = _reference(shared, clients)
  np.testing.assert_allclose(out['g'], np.tensordot(weights, ref['g'], 1), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['s'], np.dot(weights, ref['s']), rtol=1e-5)


def test_shared_gradient_is_not_summed_over_devices():
  # The FACTS.md trap: without pcast, each device's gradient of a replicated input is psum'ed.
  shared, clients = _inputs(c=8)
  mesh = placement.client_mesh(8)
  out = jax.jit(lambda s, c: placement.map_clients(_fn, s, c, 'vmap', mesh=mesh))(shared, clients)
  np.testing.assert_allclose(out['g'], _reference(shared, clients)['g'], rtol=1e-5, atol=1e-6)


def test_auto_strategy_by_backend_and_bad_names():
  assert placement.resolve_strategy('auto', 'cpu') == 'scan'
  assert placement.resolve_strategy('auto', 'gpu') == 'vmap'
  with pytest.raises(ValueError, match='config.placement'):
    placement.resolve_strategy('pmap')
  with pytest.raises(ValueError, match='chunk_size'):
    placement.validate_placement('chunked', None)
  with pytest.raises(ValueError, match='num_devices'):
    placement.client_mesh(jax.device_count() + 1)
