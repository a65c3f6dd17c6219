"""local_sgd against hand-computed SGD on least squares."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab.clients import local
from fedjax_lab.models import models


def _client(n, m, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((m, d), np.float32)
  y = np.zeros((m,), np.float32)
  x[:n] = rng.normal(size=(n, d))
  y[:n] = rng.normal(size=n)
  return local.ClientData(jnp.asarray(x), jnp.asarray(y), jnp.asarray(n, jnp.int32))


def test_full_batch_step_equals_gradient_descent():
  model = models.linear_regression((3,))
  data = _client(n=5, m=8)
  params = model.init(jax.random.key(0))
  update = local.local_sgd(model, optax.sgd(0.1), local_epochs=3, batch_size=-1, max_examples=8)
  out = update(params, data, jax.random.key(1))
  w = np.asarray(params['Dense_0']['kernel'])[:, 0].astype(np.float64)
  x, y = np.asarray(data.x[:5], np.float64), np.asarray(data.y[:5], np.float64)
  w0 = w.copy()
  for _ in range(3):  # mean of 0.5 (xw - y)^2 over the 5 real rows only
    w = w - 0.1 * x.T @ (x @ w - y) / 5
  np.testing.assert_allclose(np.asarray(out.delta['Dense_0']['kernel'])[:, 0], w - w0, rtol=1e-5, atol=1e-6)
  assert int(out.num_steps) == 3


def test_padding_rows_never_train():
  model = models.linear_regression((3,))
  data = _client(n=4, m=8)
  garbage = data._replace(x=data.x.at[4:].set(100.0), y=data.y.at[4:].set(-50.0))
  update = local.local_sgd(model, optax.sgd(0.05), local_epochs=2, batch_size=2, max_examples=8)
  params = model.init(jax.random.key(0))
  a = update(params, data, jax.random.key(3))
  b = update(params, garbage, jax.random.key(3))
  np.testing.assert_allclose(a.delta['Dense_0']['kernel'], b.delta['Dense_0']['kernel'], rtol=1e-6)
  assert int(a.num_steps) == 4  # 2 epochs x ceil(4 / 2) non-empty batches of the 4 padded steps


def test_empty_client_sends_zero_update():
  model = models.mlp((3,), 4, hidden=(5,))
  data = local.ClientData(jnp.ones((6, 3)), jnp.zeros((6,), jnp.int32), jnp.asarray(0, jnp.int32))
  update = local.local_sgd(model, optax.adam(0.1), local_epochs=2, batch_size=3, max_examples=6)
  out = update(model.init(jax.random.key(0)), data, jax.random.key(0))
  assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(out.delta))
  assert int(out.num_steps) == 0


def test_prox_term_pulls_towards_global_params():
  model = models.linear_regression((3,))
  data = _client(n=8, m=8)
  params = model.init(jax.random.key(0))
  plain = local.local_sgd(model, optax.sgd(0.1), 5, 2, 8)(params, data, jax.random.key(0))
  prox = local.local_sgd(model, optax.sgd(0.1), 5, 2, 8, prox_mu=1.0)(params, data, jax.random.key(0))
  assert optax.global_norm(prox.delta) < optax.global_norm(plain.delta)


@pytest.mark.parametrize('kwargs, field', [
    (dict(local_epochs=0, batch_size=2, max_examples=4), 'local_epochs'),
    (dict(local_epochs=1, batch_size=0, max_examples=4), 'batch_size'),
    (dict(local_epochs=1, batch_size=-3, max_examples=4), 'batch_size'),
])
def test_bad_arguments_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    local.local_sgd(models.linear_regression((3,)), optax.sgd(0.1), **kwargs)
