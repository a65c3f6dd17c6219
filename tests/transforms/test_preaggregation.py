"""NNM and ARC pre-aggregation transforms against plain-numpy references, on 1 and 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fedjax_lab import transforms
from fedjax_lab.transforms import make_context, preaggregation


def _cohort(seed, ties, num_clients=16):
  rng = np.random.default_rng(seed)
  draw = ((lambda s: rng.integers(-2, 3, s).astype(np.float32)) if ties
          else (lambda s: rng.normal(size=s).astype(np.float32)))
  updates = {'w': draw((num_clients, 3, 2)), 'b': draw((num_clients, 4))}
  weights = rng.integers(1, 10, num_clients).astype(np.float32)
  absent = rng.choice(num_clients, 3, replace=False)
  weights[absent] = 0
  for leaf in updates.values():
    leaf[absent] = 1e3
  return updates, weights


def _flatten(updates):
  return np.concatenate([u.reshape(u.shape[0], -1) for u in updates.values()], 1).astype(np.float64)


def _unflatten_rows(x, updates):
  out, start = {}, 0
  for name, leaf in updates.items():
    size = int(np.prod(leaf.shape[1:]))
    out[name] = x[:, start:start + size].reshape(leaf.shape)
    start += size
  return out


def ref_nnm(updates, weights, f):
  x = _flatten(updates)
  present = np.flatnonzero(weights > 0)
  n = len(present)
  out = x.copy()
  for i in present:
    d = np.array([np.sum((x[i] - x[j]) ** 2) for j in present])
    nearest = present[np.argsort(d, kind='stable')[:n - f]]
    out[i] = x[nearest].mean(axis=0)
  return _unflatten_rows(out, updates)


def ref_arc(updates, weights, f):
  x = _flatten(updates)
  present = np.flatnonzero(weights > 0)
  n = len(present)
  k = int(2 * (f / n) * (n - f))
  norms = np.linalg.norm(x[present], axis=1)
  threshold = np.sort(norms)[::-1][k]
  out = x.copy()
  for i, norm in zip(present, norms):
    if norm > threshold:
      out[i] = x[i] * threshold / norm
  return _unflatten_rows(out, updates)


TRANSFORMS = {
    'nnm_f2': (transforms.nearest_neighbor_mixing(2, clients_per_round=16), lambda u, w: ref_nnm(u, w, 2)),
    'nnm_f0': (transforms.nnm(0), lambda u, w: ref_nnm(u, w, 0)),
    'arc_f3': (transforms.adaptive_robust_clipping(3, clients_per_round=16), lambda u, w: ref_arc(u, w, 3)),
    'arc_f1': (transforms.arc(1), lambda u, w: ref_arc(u, w, 1)),
}
JITTED = {name: jax.jit(t.update) for name, (t, _) in TRANSFORMS.items()}


@pytest.mark.parametrize('num_devices', [1, 8])
@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('name', list(TRANSFORMS))
def test_matches_numpy_reference(name, ties, num_devices):
  if jax.device_count() < num_devices:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  mesh = jax.make_mesh((num_devices,), ('clients',), devices=jax.devices()[:num_devices])
  clients = NamedSharding(mesh, P('clients'))
  updates, weights = _cohort(int(ties) + 7, ties)
  ctx = make_context(weights, jax.random.key(0), None)
  ctx = ctx._replace(weights=jax.device_put(ctx.weights, clients),
                     client_ids=jax.device_put(ctx.client_ids, clients),
                     byzantine=jax.device_put(ctx.byzantine, clients),
                     rng=jax.device_put(ctx.rng, NamedSharding(mesh, P())),
                     round=jax.device_put(ctx.round, NamedSharding(mesh, P())))
  placed = jax.device_put(jax.tree.map(jnp.asarray, updates), clients)
  transform, reference = TRANSFORMS[name]
  out, _ = JITTED[name](placed, transform.init(None), ctx)
  expected = reference(updates, weights)
  for key in expected:
    assert out[key].shape == updates[key].shape and out[key].dtype == updates[key].dtype
    # The stack keeps its client sharding for whatever comes next.
    assert out[key].sharding.spec[0] == 'clients'
    np.testing.assert_allclose(np.asarray(out[key]), expected[key], rtol=1e-5, atol=1e-4, err_msg=key)


def test_arc_clips_the_k_largest_to_the_next_norm():
  # n = 5, f = 1: k = floor(2 * 1/5 * 4) = 1, so only the largest (norm 10) is cut to norm 3.
  x = np.array([[1.0, 0], [2.0, 0], [3.0, 0], [0, 10.0], [0, 0.5]], np.float32)
  ctx = make_context(np.ones(5, np.float32), jax.random.key(0), None)
  out, _ = jax.jit(transforms.arc(1).update)({'x': x}, (), ctx)
  np.testing.assert_allclose(np.asarray(out['x']), [[1, 0], [2, 0], [3, 0], [0, 3], [0, 0.5]], rtol=1e-6)
  assert preaggregation.arc_num_clipped(5, 1) == 1
  assert preaggregation.arc_num_clipped(10, 0) == 0


def test_validation():
  with pytest.raises(ValueError, match=r'nearest_neighbor_mixing: f=5 needs 2f < n.*n=10'):
    transforms.nearest_neighbor_mixing(5, clients_per_round=10)
  with pytest.raises(ValueError, match='f=-1'):
    transforms.arc(-1)
  ctx = make_context(np.ones(4, np.float32), jax.random.key(0), None)
  with pytest.raises(ValueError, match='clients_per_round'):
    jax.jit(transforms.arc(2).update)({'x': np.zeros((4, 1), np.float32)}, (), ctx)
