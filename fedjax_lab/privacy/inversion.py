"""Gradient inversion: reconstruct a client's examples from the update it sends.

Deep Leakage from Gradients (DLG; Zhu, Liu & Han, NeurIPS 2019) optimises dummy inputs x' and
dummy soft labels y' so that the gradient they induce matches the observed one,

    min_{x', y'}  || g(x', softmax(y')) - g_observed ||_2^2,

and improved DLG (iDLG; Zhao, Mopuri & Bilen, 2020) first reads the label off the observed
gradient: for one example with softmax cross-entropy, the last layer's kernel gradient is
h (p - onehot(y))^T with h >= 0 (ReLU or sigmoid features), so the true class is the only column
whose entries are <= 0. The attack then only optimises x'.

The observation can be a FedSGD gradient (one example or a small batch) or a FedAvg update
(several local SGD steps): the attacker knows the global parameters, the client learning rate and
the number of local steps, simulates the same steps on the dummy data and matches the delta
(Zhu et al. Sec. 4.3; Geiping et al., NeurIPS 2020). Both are gradients of `simulate(x', p')`,
so one optimiser loop serves both.

Optimisers: L-BFGS from optax (`optax.lbfgs` with its zoom line search, as the DLG paper uses
L-BFGS) and Adam. The loop is a `lax.scan` of `lax.scan`s, compiled once, that keeps snapshots of
the reconstruction for figures.

Quality: MSE and PSNR (data in [0, 1]) after the best assignment of reconstructed to true
examples (the gradient of a batch mean is invariant to the order of its examples), and the rate
at which labels are recovered under that assignment.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment

from fedjax_lab.models import losses
from fedjax_lab.models import models as models_lib

PyTree = Any
OPTIMIZERS = ('lbfgs', 'adam')
OBSERVATIONS = ('fedsgd', 'fedavg')


# ----------------------------------------------------------------------------- models


class _SigmoidMLP(nn.Module):
  """Flatten, then Dense layers with sigmoid activations (DLG's twice-differentiable choice)."""

  hidden: Sequence[int]
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.sigmoid(nn.Dense(width)(x))
    return nn.Dense(self.num_outputs)(x)


def sigmoid_mlp(input_shape, num_classes: int, hidden: Sequence[int] = (32,)) -> models_lib.Model:
  """An MLP with sigmoid hidden units, as the DLG papers use (smooth second derivatives).

  Args:
    input_shape: shape of one example, e.g. (8, 8).
    num_classes: K.
    hidden: widths of the hidden layers.

  Returns:
    Model mapping x [B, *input_shape] to logits [B, K] with softmax cross-entropy.
  """
  module = _SigmoidMLP(tuple(hidden), num_classes)
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  return models_lib.Model(
      init=lambda rng: module.init(rng, dummy)['params'],
      apply=lambda params, x: module.apply({'params': params}, x),
      loss=losses.softmax_cross_entropy,
      metrics={'accuracy': losses.accuracy},
      input_shape=tuple(input_shape),
      num_outputs=num_classes,
  )


# ----------------------------------------------------------------------------- observations


def soft_cross_entropy(logits: jax.Array, label_probs: jax.Array) -> jax.Array:
  """Mean over the batch of -sum_k p_k log softmax(logits)_k: logits, label_probs [B, K] -> []."""
  return -jnp.mean(jnp.sum(label_probs * jax.nn.log_softmax(logits), axis=-1))


def fedsgd_gradient(model: models_lib.Model, params: PyTree, x: jax.Array, label_probs: jax.Array) -> PyTree:
  """What a FedSGD client sends: the gradient of its mean loss.

  Args:
    model: a classification model.
    params: the global parameters.
    x: [B, *input_shape] the client's examples.
    label_probs: [B, K] label distributions (one-hot for real data).

  Returns:
    pytree like params.
  """
  return jax.grad(lambda p: soft_cross_entropy(model.apply(p, x), label_probs))(params)


def fedavg_update(model: models_lib.Model, params: PyTree, x: jax.Array, label_probs: jax.Array,
                  local_steps: int, client_lr: float) -> PyTree:
  """What a FedAvg client sends: w_T - w_0 after `local_steps` full-batch SGD steps.

  Args:
    model: a classification model.
    params: the global parameters w_0.
    x: [B, *input_shape] the client's examples.
    label_probs: [B, K] label distributions.
    local_steps: T.
    client_lr: the local learning rate.

  Returns:
    pytree like params, the model delta.
  """

  def step(w, _):
    g = fedsgd_gradient(model, w, x, label_probs)
    return jax.tree.map(lambda a, b: a - client_lr * b, w, g), None

  final, _ = jax.lax.scan(step, params, None, length=local_steps)
  return jax.tree.map(jnp.subtract, final, params)


def make_observation_fn(model: models_lib.Model, params: PyTree, observation: str = 'fedsgd',
                        local_steps: int = 1, client_lr: float = 0.1) -> Callable[[jax.Array, jax.Array], PyTree]:
  """Returns `simulate(x [B, ...], label_probs [B, K]) -> update` for the given protocol."""
  if observation not in OBSERVATIONS:
    raise ValueError(f'observation={observation!r} must be one of {OBSERVATIONS}.')
  if observation == 'fedsgd':
    return lambda x, p: fedsgd_gradient(model, params, x, p)
  if local_steps < 1:
    raise ValueError(f'local_steps={local_steps} must be >= 1.')
  if client_lr <= 0:
    raise ValueError(f'client_lr={client_lr} must be > 0.')
  return lambda x, p: fedavg_update(model, params, x, p, local_steps, client_lr)


# ----------------------------------------------------------------------------- iDLG


def last_dense_kernel(tree: PyTree) -> jax.Array:
  """The kernel [H, K] of the last flax Dense layer ('Dense_<i>' with the largest i)."""
  names = [k for k in tree if k.startswith('Dense_')]
  if not names:
    raise ValueError(f'No Dense_<i> layer in the parameter tree (keys {sorted(tree)}).')
  return tree[max(names, key=lambda k: int(k.split('_')[1]))]['kernel']


def idlg_label(last_kernel_grad: jax.Array) -> jax.Array:
  """iDLG's label of a single example from the last layer's kernel gradient.

  The gradient is h (p - onehot(y))^T with h >= 0, so the true class's column sums to a
  non-positive value and every other column to a non-negative one.

  Args:
    last_kernel_grad: [H, K] gradient of the last Dense kernel (or minus a FedAvg delta).

  Returns:
    [] int32 recovered label.
  """
  return jnp.argmin(jnp.sum(last_kernel_grad, axis=0)).astype(jnp.int32)


# ----------------------------------------------------------------------------- the attack


def gradient_distance(a: PyTree, b: PyTree) -> jax.Array:
  """||a - b||_2^2 summed over all leaves (DLG's objective)."""
  return sum(jnp.sum(jnp.square(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class InversionResult(NamedTuple):
  """What an inversion returns.

  Attributes:
    x: [B, *input_shape] the final reconstruction.
    labels: [B] int32 recovered labels (argmax of the dummy label logits, or iDLG's labels).
    history: [S, B, *input_shape] reconstructions after iterations `history_steps`.
    history_steps: [S] int32 iteration count of each snapshot.
    losses: [num_steps] gradient distance at every iteration.
  """

  x: jax.Array
  labels: jax.Array
  history: jax.Array
  history_steps: jax.Array
  losses: jax.Array


def _make_optimizer(optimizer: str, learning_rate: float):
  if optimizer == 'lbfgs':
    return optax.lbfgs(memory_size=20)
  return optax.adam(learning_rate)


def invert(
    simulate: Callable[[jax.Array, jax.Array], PyTree],
    observed: PyTree,
    rng: jax.Array,
    batch_size: int,
    input_shape: Sequence[int],
    num_classes: int,
    labels: jax.Array | None = None,
    optimizer: str = 'lbfgs',
    num_steps: int = 300,
    num_snapshots: int = 6,
    learning_rate: float = 0.1,
    x_init_range: tuple[float, float] = (0.0, 1.0),
    snapshot_steps: Sequence[int] | None = None,
) -> InversionResult:
  """DLG (labels=None: labels optimised jointly) or iDLG (labels given, e.g. by `idlg_label`).

  Args:
    simulate: `fn(x [B, ...], label_probs [B, K]) -> update` (see `make_observation_fn`).
    observed: the update the client sent, pytree like `simulate`'s output.
    rng: PRNG key for the dummy data (x' ~ U[x_init_range), label logits ~ N(0, 1)).
    batch_size: B, the number of examples behind `observed`.
    input_shape: shape of one example.
    num_classes: K.
    labels: optional [B] int labels; when given they are fixed one-hot targets.
    optimizer: 'lbfgs' (optax L-BFGS with zoom line search) or 'adam'.
    num_steps: optimiser iterations (one L-BFGS iteration includes its line search).
    num_snapshots: S, snapshots of the reconstruction kept for figures, evenly spaced
      (ignored when snapshot_steps is given).
    learning_rate: Adam's step size (L-BFGS uses its line search).
    x_init_range: (low, high) of the uniform initial dummy inputs (the data's range).
    snapshot_steps: optional increasing iteration counts in [1, num_steps] to snapshot, e.g.
      log-spaced to show the early iterations.

  Returns:
    InversionResult.
  """
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={optimizer!r} must be one of {OPTIMIZERS}.')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size} must be >= 1.')
  if num_steps < 1:
    raise ValueError(f'num_steps={num_steps} must be >= 1.')
  if snapshot_steps is None:
    if not 1 <= num_snapshots <= num_steps:
      raise ValueError(f'num_snapshots={num_snapshots} must lie in [1, num_steps={num_steps}].')
    snapshot_steps = np.round(np.linspace(num_steps / num_snapshots, num_steps, num_snapshots)).astype(int)
  snapshot_steps = np.asarray(snapshot_steps, int)
  if snapshot_steps.ndim != 1 or np.any(np.diff(snapshot_steps) <= 0) or not (
      1 <= snapshot_steps.min() and snapshot_steps.max() <= num_steps):
    raise ValueError(f'snapshot_steps={snapshot_steps.tolist()} must increase within [1, num_steps={num_steps}].')
  x_key, y_key = jax.random.split(rng)
  low, high = x_init_range
  dummy = {'x': jax.random.uniform(x_key, (batch_size,) + tuple(input_shape), minval=low, maxval=high)}
  if labels is None:
    dummy['label_logits'] = jax.random.normal(y_key, (batch_size, num_classes))
    fixed_probs = jnp.zeros((batch_size, num_classes))  # unused
  else:
    fixed_probs = jax.nn.one_hot(jnp.asarray(labels).reshape(batch_size), num_classes)
  run = _compiled_attack(simulate, optimizer, num_steps, float(learning_rate))
  z, iterates, losses = run(dummy, observed, fixed_probs)
  history = iterates[jnp.asarray(snapshot_steps - 1)]
  if labels is None:
    recovered = jnp.argmax(z['label_logits'], axis=-1).astype(jnp.int32)
  else:
    recovered = jnp.asarray(labels, jnp.int32).reshape(batch_size)
  return InversionResult(z['x'], recovered, history, jnp.asarray(snapshot_steps, jnp.int32), losses)


@functools.lru_cache(maxsize=32)
def _compiled_attack(simulate, optimizer: str, num_steps: int, learning_rate: float):
  """The jitted attack loop for one `simulate`; the observation and dummies are arguments, so
  attacking many observations of one model (e.g. a defence sweep) compiles once. Every iterate
  of x is kept ([num_steps, B, ...]: small for the inputs these attacks handle)."""
  opt = _make_optimizer(optimizer, learning_rate)

  def run(z, observed, fixed_probs):
    def objective(z):
      probs = jax.nn.softmax(z['label_logits']) if 'label_logits' in z else fixed_probs
      return gradient_distance(simulate(z['x'], probs), observed)

    value_and_grad = optax.value_and_grad_from_state(objective)

    def one_step(carry, _):
      z, state = carry
      if optimizer == 'lbfgs':
        value, grad = value_and_grad(z, state=state)
        updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=objective)
      else:
        value, grad = jax.value_and_grad(objective)(z)
        updates, state = opt.update(grad, state, z)
      return (optax.apply_updates(z, updates), state), value

    def one_step_keep(carry, _):
      carry, value = one_step(carry, None)
      return carry, (carry[0]['x'], value)

    (z, _), (iterates, values) = jax.lax.scan(one_step_keep, (z, opt.init(z)), None, length=num_steps)
    return z, iterates, values

  return jax.jit(run)


# ----------------------------------------------------------------------------- quality


class Quality(NamedTuple):
  """Reconstruction quality after the best matching; floats.

  Attributes:
    mse: mean squared error per coordinate, averaged over examples (reconstruction clipped to the
      data range first).
    psnr: mean over examples of 10 log10(range^2 / mse_i) (dB).
    label_accuracy: fraction of matched examples whose recovered label is right (nan if no labels).
    assignment: [B] int, true example i is matched to reconstruction assignment[i].
  """

  mse: float
  psnr: float
  label_accuracy: float
  assignment: np.ndarray


def reconstruction_quality(x_true, x_rec, y_true=None, y_rec=None,
                           data_range: tuple[float, float] = (0.0, 1.0)) -> Quality:
  """MSE/PSNR/label recovery after the assignment of reconstructions to examples minimising MSE.

  Args:
    x_true: [B, ...] the client's examples.
    x_rec: [B, ...] the reconstruction (clipped to data_range before scoring).
    y_true: optional [B] true labels.
    y_rec: optional [B] recovered labels.
    data_range: (low, high) of the data: digits in [0, 1].

  Returns:
    Quality.
  """
  low, high = data_range
  x_true = np.asarray(x_true, np.float64).reshape(len(x_true), -1)
  x_rec = np.clip(np.asarray(x_rec, np.float64).reshape(len(x_rec), -1), low, high)
  cost = np.mean(np.square(x_true[:, None, :] - x_rec[None, :, :]), axis=-1)  # [B, B]
  rows, cols = linear_sum_assignment(cost)
  per_example = cost[rows, cols]
  peak = (high - low) ** 2
  psnr = float(np.mean(10.0 * np.log10(peak / np.maximum(per_example, 1e-12 * peak))))
  label_accuracy = float('nan')
  if y_true is not None and y_rec is not None:
    label_accuracy = float(np.mean(np.asarray(y_true)[rows] == np.asarray(y_rec)[cols]))
  return Quality(float(np.mean(per_example)), psnr, label_accuracy, cols)
