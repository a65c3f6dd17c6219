"""Models as pure (init, apply) pairs around flax.linen modules, chosen by name.

Every model maps a batch x [B, *input_shape] to outputs [B, num_outputs] (classification logits)
or [B] (regression), and carries its per-example loss and metrics, so local training and
evaluation are model-agnostic pure functions (`batch_loss`, `evaluate`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_lab.models import losses

PyTree = Any


class Model(NamedTuple):
  """A model: pure functions plus what it expects.

  Attributes:
    init: rng -> params (pytree).
    apply: (params, x [B, *input_shape]) -> outputs [B, num_outputs] or [B].
    loss: (outputs, y [B]) -> per-example loss [B].
    metrics: name -> (outputs, y) -> per-example values [B]; averaged over real examples.
    input_shape: shape of one example.
    num_outputs: classes (1 for regression).
  """

  init: Callable[[jax.Array], PyTree]
  apply: Callable[[PyTree, jax.Array], jax.Array]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  metrics: dict[str, Callable[[jax.Array, jax.Array], jax.Array]]
  input_shape: tuple[int, ...]
  num_outputs: int


def batch_loss(model: Model, params: PyTree, x: jax.Array, y: jax.Array, mask: jax.Array | None = None):
  """Mean loss over the real rows of a padded batch: x [B, ...], y [B], mask [B] -> scalar."""
  return losses.masked_mean(model.loss(model.apply(params, x), y), mask)


def evaluate(model: Model, params: PyTree, x: jax.Array, y: jax.Array, mask: jax.Array | None = None):
  """{'loss': scalar, **metrics} averaged over the real rows of x [B, ...], y [B]."""
  outputs = model.apply(params, x)
  result = {'loss': losses.masked_mean(model.loss(outputs, y), mask)}
  for name, fn in model.metrics.items():
    result[name] = losses.masked_mean(fn(outputs, y), mask)
  return result


def num_params(params: PyTree) -> int:
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def _from_module(module: nn.Module, input_shape, num_outputs, task: str) -> Model:
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)

  def init(rng):
    return module.init(rng, dummy)['params']

  if task == 'regression':
    def apply(params, x):
      return module.apply({'params': params}, x)[..., 0]
    return Model(init, apply, losses.squared_error, {}, tuple(input_shape), 1)

  def apply(params, x):
    return module.apply({'params': params}, x)
  return Model(init, apply, losses.softmax_cross_entropy, {'accuracy': losses.accuracy},
               tuple(input_shape), num_outputs)


class _Dense(nn.Module):
  """Flatten, then an MLP with ReLU hidden layers (no hidden layers: a linear model)."""

  hidden: Sequence[int]
  num_outputs: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_outputs, use_bias=self.use_bias)(x)


class _CNN2D(nn.Module):
  """McMahan et al. (2017) CNN: two 5x5 conv layers (max-pooled), a dense layer, softmax output."""

  features: Sequence[int]
  dense: int
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    if x.ndim == 3:  # [B, H, W] -> [B, H, W, 1]
      x = x[..., None]
    for width in self.features:
      x = nn.relu(nn.Conv(width, (5, 5), padding='SAME')(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense)(x))
    return nn.Dense(self.num_outputs)(x)


class _CNN1D(nn.Module):
  """A small 1-D CNN for MNIST-1D (Greydanus 2020 uses 3 conv layers of 25 channels, width 5)."""

  channels: int
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    x = x[..., None] if x.ndim == 2 else x  # [B, L] -> [B, L, 1]
    for stride in (2, 2, 1):
      x = nn.relu(nn.Conv(self.channels, (5,), strides=(stride,), padding='SAME')(x))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_outputs)(x)


def linear_regression(input_shape, use_bias: bool = False) -> Model:
  """y = <w, x> (+ b): the least-squares model; loss 0.5 (y_hat - y)^2."""
  return _from_module(_Dense((), 1, use_bias=use_bias), input_shape, 1, 'regression')


def logistic_regression(input_shape, num_classes: int) -> Model:
  """Multinomial logistic regression (softmax of a linear map)."""
  return _from_module(_Dense((), num_classes), input_shape, num_classes, 'classification')


def mlp(input_shape, num_classes: int, hidden: Sequence[int] = (200, 200)) -> Model:
  """MLP with ReLU; the default (200, 200) is McMahan et al.'s 2NN."""
  return _from_module(_Dense(tuple(hidden), num_classes), input_shape, num_classes, 'classification')


def cnn(input_shape, num_classes: int, features: Sequence[int] = (32, 64), dense: int = 512) -> Model:
  """McMahan et al.'s CNN for 28x28 images (defaults); smaller widths suit 8x8 digits."""
  return _from_module(_CNN2D(tuple(features), dense, num_classes), input_shape, num_classes,
                      'classification')


def cnn_digits(input_shape=(8, 8), num_classes: int = 10) -> Model:
  """An 8x8 variant of McMahan's CNN for scikit-learn digits: conv 16, conv 32, dense 64."""
  return cnn(input_shape, num_classes, features=(16, 32), dense=64)


def cnn1d(input_shape=(40,), num_classes: int = 10, channels: int = 25) -> Model:
  """1-D CNN for MNIST-1D."""
  return _from_module(_CNN1D(channels, num_classes), input_shape, num_classes, 'classification')


MODELS: dict[str, Callable[..., Model]] = {
    'linear_regression': linear_regression,
    'logistic_regression': logistic_regression,
    'mlp': mlp,
    'cnn': cnn,
    'cnn_digits': cnn_digits,
    'cnn1d': cnn1d,
}


def get_model(name: str, input_shape, num_classes: int = 1, **kwargs) -> Model:
  """Builds a model by name (see MODELS); regression models ignore num_classes."""
  if name not in MODELS:
    raise ValueError(f'Unknown model {name!r} (config.model.name); choose one of {sorted(MODELS)}.')
  if name == 'linear_regression':
    return linear_regression(input_shape, **kwargs)
  return MODELS[name](input_shape, num_classes, **kwargs)
