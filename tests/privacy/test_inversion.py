"""Gradient inversion: DLG/iDLG recover a digit from an undefended gradient; noise stops them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.models import models
from fedjax_lab.privacy import inversion

# Acceptance thresholds (pixel values in [0, 1]): a reconstruction with MSE below 1e-3 (PSNR > 30 dB)
# is visually identical to the digit; guessing the data set's mean digit scores MSE ~ 0.07.
SUCCESS_MSE = 1e-3
NOISE_STDDEV = 1.0  # per-coordinate Gaussian noise on the gradient, the scale at which DLG fails


@pytest.fixture(scope='module')
def digits():
  from sklearn.datasets import load_digits
  bunch = load_digits()
  return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int32)


@pytest.fixture(scope='module')
def mlp():
  model = models.get_model('mlp', (8, 8), 10, hidden=(32,))  # the engine's ReLU MLP
  return model, model.init(jax.random.key(0))


@pytest.fixture(scope='module')
def fedsgd_simulate(mlp):
  # One simulate function for the module, so the attack loop compiles once for all FedSGD tests.
  return inversion.make_observation_fn(*mlp, 'fedsgd')


def _observe(model, params, x, y):
  return inversion.fedsgd_gradient(model, params, jnp.asarray(x), jax.nn.one_hot(jnp.asarray(y), 10))


def test_idlg_label_is_exact_for_every_digit(digits, mlp):
  x, y = digits
  model, params = mlp
  take = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(10)])  # 30 examples, all classes
  grads = jax.vmap(lambda a, b: _observe(model, params, a[None], b[None]))(jnp.asarray(x[take]), jnp.asarray(y[take]))
  labels = jax.vmap(lambda g: inversion.idlg_label(inversion.last_dense_kernel(g)))(grads)
  np.testing.assert_array_equal(labels, y[take])


def test_dlg_inverts_an_undefended_single_example_gradient(digits, mlp, fedsgd_simulate):
  x, y = digits
  model, params = mlp
  simulate = fedsgd_simulate
  observed = _observe(model, params, x[:1], y[:1])
  label = inversion.idlg_label(inversion.last_dense_kernel(observed))
  assert int(label) == y[0]
  result = inversion.invert(simulate, observed, jax.random.key(1), 1, (8, 8), 10, num_steps=200, num_snapshots=4)
  quality = inversion.reconstruction_quality(x[:1], result.x, y[:1], result.labels)
  assert quality.mse < SUCCESS_MSE
  assert quality.label_accuracy == 1.0
  assert result.history.shape == (4, 1, 8, 8) and result.losses.shape == (200,)
  assert result.losses[-1] < 1e-3 * result.losses[0]


def test_noise_of_stated_scale_defeats_the_attack(digits, mlp, fedsgd_simulate):
  x, y = digits
  model, params = mlp
  simulate = fedsgd_simulate
  observed = _observe(model, params, x[:1], y[:1])
  leaves, treedef = jax.tree.flatten(observed)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  noisy = jax.tree.unflatten(treedef, [g + NOISE_STDDEV * jax.random.normal(k, g.shape) for g, k in zip(leaves, keys)])
  result = inversion.invert(simulate, noisy, jax.random.key(1), 1, (8, 8), 10, num_steps=200, num_snapshots=4)
  quality = inversion.reconstruction_quality(x[:1], result.x, y[:1], result.labels)
  mean_digit_mse = float(np.mean((x[:1] - x.mean(0)) ** 2))
  assert quality.mse > max(mean_digit_mse, 50 * SUCCESS_MSE)  # worse than not looking at the gradient


def test_idlg_with_adam_recovers_a_digit(digits, mlp, fedsgd_simulate):
  x, y = digits
  model, params = mlp
  simulate = fedsgd_simulate
  observed = _observe(model, params, x[5:6], y[5:6])
  label = inversion.idlg_label(inversion.last_dense_kernel(observed))[None]
  result = inversion.invert(simulate, observed, jax.random.key(2), 1, (8, 8), 10, labels=label, optimizer='adam',
                            num_steps=300, num_snapshots=3, learning_rate=0.05)
  assert inversion.reconstruction_quality(x[5:6], result.x).mse < 10 * SUCCESS_MSE


@pytest.mark.slow
def test_dlg_inverts_a_fedavg_update_of_several_local_steps(digits, mlp):
  x, y = digits
  model, params = mlp
  simulate = inversion.make_observation_fn(model, params, 'fedavg', local_steps=3, client_lr=0.1)
  observed = simulate(jnp.asarray(x[2:3]), jax.nn.one_hot(jnp.asarray(y[2:3]), 10))
  label = inversion.idlg_label(-inversion.last_dense_kernel(observed))  # a delta points downhill
  assert int(label) == y[2]
  result = inversion.invert(simulate, observed, jax.random.key(3), 1, (8, 8), 10, labels=label[None],
                            num_steps=200, num_snapshots=2)
  assert inversion.reconstruction_quality(x[2:3], result.x).mse < SUCCESS_MSE


def test_fedavg_update_equals_engine_local_sgd(digits, mlp):
  from fedjax_lab.clients import local
  import optax
  x, y = digits
  model, params = mlp
  client = local.local_sgd(model, optax.sgd(0.1), local_epochs=3, batch_size=-1, max_examples=4)
  engine = client(params, local.ClientData(jnp.asarray(x[:4]), jnp.asarray(y[:4]), jnp.asarray(4)), jax.random.key(0))
  ours = inversion.fedavg_update(model, params, jnp.asarray(x[:4]), jax.nn.one_hot(jnp.asarray(y[:4]), 10), 3, 0.1)
  for a, b in zip(jax.tree.leaves(engine.delta), jax.tree.leaves(ours)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_quality_matches_numpy_after_best_assignment():
  rng = np.random.default_rng(0)
  truth = rng.uniform(0.1, 0.9, size=(5, 8, 8))
  perm = rng.permutation(5)
  rec = truth[perm] + 0.01
  quality = inversion.reconstruction_quality(truth, rec, np.arange(5), np.arange(5)[perm])
  assert quality.mse == pytest.approx(1e-4, rel=1e-6)
  assert quality.psnr == pytest.approx(40.0, rel=1e-6)
  assert quality.label_accuracy == 1.0
  np.testing.assert_array_equal(perm[quality.assignment], np.arange(5))
  clipped = inversion.reconstruction_quality(np.zeros((1, 4)), np.full((1, 4), -3.0))
  assert clipped.mse == 0.0  # reconstructions are clipped to the data range first


def test_idlg_reads_the_negative_column():
  h = np.array([0.5, 0.0, 2.0])
  p = np.array([0.1, 0.6, 0.3])
  grad = np.outer(h, p - np.eye(3)[2])
  assert int(inversion.idlg_label(jnp.asarray(grad))) == 2


def test_sigmoid_mlp_shapes():
  model = inversion.sigmoid_mlp((8, 8), 10, hidden=(16, 12))
  params = model.init(jax.random.key(0))
  assert model.apply(params, jnp.zeros((3, 8, 8))).shape == (3, 10)
  assert inversion.last_dense_kernel(params).shape == (12, 10)


@pytest.mark.parametrize('kwargs,match', [
    (dict(optimizer='sgd'), 'optimizer'), (dict(batch_size=0), 'batch_size'),
    (dict(num_steps=10, num_snapshots=30), 'num_snapshots'), (dict(snapshot_steps=(5, 3)), 'snapshot_steps'),
    (dict(snapshot_steps=(1, 11)), 'snapshot_steps')])
def test_bad_arguments(kwargs, match):
  args = dict(batch_size=1, num_steps=10, num_snapshots=2)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    inversion.invert(lambda x, p: x, jnp.zeros((1, 2)), jax.random.key(0), input_shape=(2,), num_classes=2, **args)
  with pytest.raises(ValueError, match='observation'):
    inversion.make_observation_fn(None, None, 'fedprox')
