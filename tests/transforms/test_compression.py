"""Compression transforms against plain-numpy references: rotation, quantization, top-k + error feedback."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.transforms import compression as comp
from fedjax_lab.transforms.base import make_context


def _hadamard(n):
  h = np.ones((1, 1))
  while h.shape[0] < n:
    h = np.block([[h, h], [h, -h]])
  return h


def _updates(num_clients=3, seed=0):
  rng = np.random.default_rng(seed)
  return {'w': jnp.asarray(rng.normal(size=(num_clients, 3, 4)), jnp.float32),
          'b': jnp.asarray(rng.normal(size=(num_clients, 5)), jnp.float32)}  # D = 17


def test_fwht_equals_hadamard_matrix():
  x = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
  np.testing.assert_allclose(comp.fwht(jnp.asarray(x)), x @ _hadamard(16), rtol=1e-5, atol=1e-5)


def test_rotation_is_orthogonal_and_inverted():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(17,)), jnp.float32)
  signs = comp.random_signs(jax.random.key(0), 32)
  y = jax.jit(comp.hadamard_rotate)(x, signs)
  np.testing.assert_allclose(jnp.linalg.norm(y), jnp.linalg.norm(x), rtol=1e-5)
  reference = _hadamard(32) @ (np.asarray(signs) * np.pad(np.asarray(x), (0, 15))) / np.sqrt(32)
  np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.jit(comp.hadamard_unrotate, static_argnums=2)(y, signs, 17), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('bits', [1, 2, 8])
def test_quantize_lands_on_grid_and_is_unbiased(bits):
  x = jnp.asarray(np.random.default_rng(2).normal(size=(64,)), jnp.float32)
  keys = jax.random.split(jax.random.key(3), 4000)
  q = np.asarray(jax.jit(jax.vmap(lambda k: comp.stochastic_quantize(x, bits, k)))(keys))
  lo, hi = float(x.min()), float(x.max())
  step = (hi - lo) / (2 ** bits - 1)
  codes = (q - lo) / step
  np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
  # Each draw rounds to a neighbouring level.
  assert np.all(np.abs(q - np.asarray(x)) <= step + 1e-5)
  # Unbiased: the mean over draws approaches x (standard error <= step / (2 sqrt(4000))).
  np.testing.assert_allclose(q.mean(0), x, atol=4 * step / (2 * np.sqrt(4000)) + 1e-6)


def test_quantize_transform_bytes_shapes_and_32_bits_identity():
  updates = _updates()
  ctx = make_context(jnp.array([5.0, 0.0, 2.0]), jax.random.key(0), None, client_ids=jnp.array([7, 2, 9]))
  for bits, rotate in [(8, False), (4, True), (32, False)]:
    t = comp.quantize(bits, rotate)
    out, state = jax.jit(t.update)(updates, t.init(None), ctx)
    chex.assert_trees_all_equal_shapes_and_dtypes(out, updates)
    # Two clients participate (weight > 0).
    assert float(state.bytes_sent) == 2 * comp.quantize_bytes_per_client(17, bits, rotate)
  assert comp.quantize_bytes_per_client(17, 8) == 17 + 8
  assert comp.quantize_bytes_per_client(17, 4, rotate=True) == 16 + 8
  assert comp.quantize_bytes_per_client(17, 32) == 68
  out, _ = jax.jit(comp.quantize(32).update)(updates, (), ctx)
  chex.assert_trees_all_close(out, updates)


def test_quantize_error_shrinks_with_bits_and_rotation_helps_spiky_vectors():
  x = np.zeros((1, 256), np.float32)
  x[0, 3] = 10.0
  x[0, 10:] = np.random.default_rng(4).normal(size=246) * 0.1
  ctx = make_context(jnp.ones(1), jax.random.key(1), None)
  errors = {}
  for bits, rotate in [(2, False), (2, True), (8, False)]:
    out, _ = jax.jit(comp.quantize(bits, rotate).update)({'x': jnp.asarray(x)}, None, ctx)
    errors[bits, rotate] = float(np.linalg.norm(np.asarray(out['x']) - x))
  assert errors[8, False] < errors[2, False]
  assert errors[2, True] < errors[2, False]


def _topk_reference(rounds, k, num_clients, error_feedback):
  """Plain-numpy top-k with a per-client residual dict; rounds: list of (ids, weights, [C, D])."""
  residual = {i: np.zeros(rounds[0][2].shape[1]) for i in range(num_clients)}
  outputs = []
  for ids, weights, u in rounds:
    sent_all = []
    for i, w, x in zip(ids, weights, u):
      acc = x + residual[i] if error_feedback else x.copy()
      keep = np.argsort(-np.abs(acc), kind='stable')[:k]
      sent = np.zeros_like(acc)
      sent[keep] = acc[keep]
      if error_feedback and w > 0:
        residual[i] = acc - sent
      sent_all.append(sent)
    outputs.append(np.stack(sent_all))
  return outputs, residual


@pytest.mark.parametrize('error_feedback', [True, False])
def test_topk_matches_numpy_reference_over_rounds(error_feedback):
  rng = np.random.default_rng(5)
  num_clients, dim, k = 6, 10, 3
  rounds = [(np.array([4, 1, 3]), np.array([1.0, 2.0, 0.0]), rng.normal(size=(3, dim))),
            (np.array([3, 4, 0]), np.array([1.0, 1.0, 1.0]), rng.normal(size=(3, dim))),
            (np.array([4, 3, 5]), np.array([3.0, 1.0, 1.0]), rng.normal(size=(3, dim)))]
  expected, residual = _topk_reference(rounds, k, num_clients, error_feedback)
  t = comp.topk(k, dim, num_clients, error_feedback)
  state = t.init(None)
  update = jax.jit(t.update)
  for (ids, weights, u), want in zip(rounds, expected):
    ctx = make_context(jnp.asarray(weights), jax.random.key(0), None, client_ids=jnp.asarray(ids))
    out, state = update({'u': jnp.asarray(u, jnp.float32)}, state, ctx)
    np.testing.assert_allclose(out['u'], want, rtol=1e-5, atol=1e-6)
    assert float(state.bytes_sent) == np.sum(weights > 0) * k * 8
  if error_feedback:
    np.testing.assert_allclose(state.residuals, np.stack([residual[i] for i in range(num_clients)]),
                               rtol=1e-5, atol=1e-6)
  else:
    assert state.residuals.shape == (0, dim)


def test_error_feedback_sends_everything_eventually():
  # A constant update: with error feedback the running sum of what was sent tracks the true sum.
  dim, k, rounds = 20, 2, 40
  x = np.random.default_rng(6).normal(size=(1, dim)).astype(np.float32)
  ctx = make_context(jnp.ones(1), jax.random.key(0), None)
  errors = {}
  for ef in (True, False):
    t = comp.topk(k, dim, 1, ef)
    update = jax.jit(t.update)
    state, total = t.init(None), np.zeros((1, dim))
    for _ in range(rounds):
      out, state = update({'u': jnp.asarray(x)}, state, ctx)
      total += np.asarray(out['u'])
    errors[ef] = np.linalg.norm(total / rounds - x)
  assert errors[True] < 0.2 * errors[False]


def test_bytes_per_client_and_resolve_k():
  assert comp.resolve_k(100, fraction=0.1) == 10
  assert comp.resolve_k(100, k=7) == 7
  assert comp.bytes_per_client('topk', 100, fraction=0.1, error_feedback=True) == 10 * 8
  assert comp.bytes_per_client('quantize', 100, bits=8) == 108
  assert comp.bytes_per_client('none', 100) == 400


@pytest.mark.parametrize('call, field', [
    (lambda: comp.quantize(0), 'config.compression.bits'),
    (lambda: comp.quantize(33), 'config.compression.bits'),
    (lambda: comp.quantize(2.5), 'config.compression.bits'),
    (lambda: comp.resolve_k(100, k=0), 'config.compression.k'),
    (lambda: comp.resolve_k(100, k=101), 'config.compression.k'),
    (lambda: comp.resolve_k(100, fraction=0.0), 'config.compression.fraction'),
    (lambda: comp.resolve_k(100), 'config.compression'),
    (lambda: comp.bytes_per_client('zip', 100), 'config.compression.name'),
])
def test_bad_input_names_the_field(call, field):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    call()
