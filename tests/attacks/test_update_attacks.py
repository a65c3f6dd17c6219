"""Model-poisoning attacks against plain-numpy references; honest and absent rows untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from scipy.stats import norm

from fedjax_lab import attacks
from fedjax_lab.transforms import make_context

C = 8


def _cohort(seed=0):
  rng = np.random.default_rng(seed)
  updates = {'w': rng.normal(size=(C, 3, 2)).astype(np.float32), 'b': rng.normal(size=(C, 4)).astype(np.float32)}
  weights = np.array([3, 1, 0, 2, 5, 1, 4, 2], np.float32)       # client 2 is absent
  byzantine = np.array([0, 0, 0, 0, 0, 1, 1, 1], bool)            # clients 5-7 attack
  client_ids = np.array([40, 12, 7, 33, 25, 2, 90, 61], np.int32)
  return updates, weights, byzantine, client_ids


def _apply(transform, updates, weights, byzantine, client_ids, mesh=None, seed=0):
  ctx = make_context(weights, jax.random.key(seed), None, client_ids, byzantine)
  if mesh is not None:
    clients, replicated = NamedSharding(mesh, P('clients')), NamedSharding(mesh, P())
    updates = jax.device_put(updates, clients)
    ctx = jax.device_put(ctx, ctx._replace(weights=clients, client_ids=clients, byzantine=clients,
                                           rng=replicated, params=None, round=replicated))
  out, _ = jax.jit(transform.update)(updates, transform.init(None), ctx)
  return jax.tree.map(np.asarray, out)


def _honest_stats(updates, weights, byzantine):
  honest = (weights > 0) & ~byzantine
  mean = {k: v[honest].astype(np.float64).mean(0) for k, v in updates.items()}
  std = {k: v[honest].astype(np.float64).std(0, ddof=1) for k, v in updates.items()}
  return mean, std


def _expected(updates, byzantine, malicious):
  return {k: np.where(byzantine.reshape((-1,) + (1,) * (v.ndim - 1)), malicious[k], v)
          for k, v in updates.items()}


def ref_malicious(name, updates, weights, byzantine, client_ids):
  mean, std = _honest_stats(updates, weights, byzantine)
  if name == 'sign_flip':
    return {k: -2.0 * v for k, v in updates.items()}
  if name == 'scaled_update':
    return {k: 10.0 * v for k, v in updates.items()}
  if name == 'alie_z1.5':
    return {k: mean[k] - 1.5 * std[k] for k in updates}
  if name == 'alie_default':
    present = weights > 0
    z = attacks.alie_default_z(int(present.sum()), int((present & byzantine).sum()))
    return {k: mean[k] - z * std[k] for k in updates}
  if name == 'ipm':
    return {k: -0.5 * mean[k] for k in updates}
  if name == 'mimic':
    honest = (weights > 0) & ~byzantine
    target = np.flatnonzero(honest)[np.argmin(client_ids[honest])]
    return {k: v[target] for k, v in updates.items()}
  raise KeyError(name)


ATTACKS = {
    'sign_flip': attacks.sign_flip(2.0),
    'scaled_update': attacks.scaled_update(10.0),
    'alie_z1.5': attacks.alie(z=1.5),
    'alie_default': attacks.alie(),
    'ipm': attacks.ipm(0.5),
    'mimic': attacks.mimic(),
}


@pytest.mark.parametrize('num_devices', [1, 8])
@pytest.mark.parametrize('name', list(ATTACKS))
def test_matches_reference(name, num_devices):
  if jax.device_count() < num_devices:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  updates, weights, byzantine, ids = _cohort()
  mesh = jax.make_mesh((num_devices,), ('clients',), devices=jax.devices()[:num_devices])
  out = _apply(ATTACKS[name], updates, weights, byzantine, ids, mesh)
  expected = _expected(updates, byzantine, ref_malicious(name, updates, weights, byzantine, ids))
  for k in updates:
    np.testing.assert_allclose(out[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_alie_default_z_is_the_papers_formula():
  # n = 50, f = 12 (24 %): s = floor(26) - 12 = 14, z = Phi^{-1}(36 / 50).
  assert attacks.alie_default_z(50, 12) == pytest.approx(norm.ppf(0.72))
  assert attacks.alie_default_z(8, 3) == pytest.approx(norm.ppf((8 - (5 - 3)) / 8))


def test_gaussian_noise_depends_on_client_id_not_position():
  updates, weights, byzantine, ids = _cohort()
  out = _apply(attacks.gaussian_noise(std=2.0), updates, weights, byzantine, ids)
  for k in updates:
    np.testing.assert_array_equal(out[k][~byzantine], updates[k][~byzantine])
  # Reversing the cohort reverses the rows: each client keeps its own draw.
  rev = slice(None, None, -1)
  out_rev = _apply(attacks.gaussian_noise(std=2.0), {k: v[rev] for k, v in updates.items()},
                   weights[rev], byzantine[rev], ids[rev])
  for k in updates:
    np.testing.assert_allclose(out_rev[k][rev], out[k], rtol=1e-6)
  noise = np.concatenate([out[k][byzantine].ravel() for k in updates])
  assert 1.0 < noise.std() < 3.5
  additive = _apply(attacks.gaussian_noise(std=2.0, additive=True), updates, weights, byzantine, ids)
  for k in updates:
    np.testing.assert_allclose(additive[k][byzantine] - updates[k][byzantine], out[k][byzantine], rtol=1e-5, atol=1e-5)


def test_model_replacement_scales_by_n_over_eta():
  updates, weights, byzantine, ids = _cohort()
  out = _apply(attacks.model_replacement(clients_per_round=8, server_lr=0.5), updates, weights, byzantine, ids)
  np.testing.assert_allclose(out['b'][byzantine], 16.0 * updates['b'][byzantine], rtol=1e-6)


def test_registry_and_errors():
  assert attacks.get_attack('none') == attacks.Attack(None, None)
  assert attacks.get_attack('ipm', epsilon=0.2).transform is not None
  assert attacks.get_attack('label_flip', num_classes=10).data_attack is not None
  with pytest.raises(ValueError, match=r"Unknown attack 'sign_flop'.*config.attack.name.*sign_flip"):
    attacks.get_attack('sign_flop')
  with pytest.raises(ValueError, match='epsilon'):
    attacks.ipm(epsilon=0.0)
  with pytest.raises(ValueError, match='z='):
    attacks.alie(z='large')
  with pytest.raises(ValueError, match='clients_per_round'):
    attacks.model_replacement(clients_per_round=0)
