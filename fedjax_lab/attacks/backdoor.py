"""Backdoor attacks: a trigger pattern stamped into some inputs, relabelled to a target class
(Gu et al., BadNets 2017; Bagdasaryan et al., AISTATS 2020), and the success rate that measures it.

The data side is a data attack `fn(round_inputs, rng) -> round_inputs`; boosting the malicious
delta (model replacement) is the update transform `attacks.model_replacement`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import cohort
from fedjax_lab.attacks.data import DataAttack, check_class
from fedjax_lab.models import models as models_lib


class Trigger(NamedTuple):
  """A pattern: inputs take `value` where `mask` is True. Both shaped like one example."""

  mask: jax.Array
  value: jax.Array


def corner_trigger(feature_shape: Sequence[int], size: int = 2, value: float = 1.0,
                   image_shape: Sequence[int] | None = None) -> Trigger:
  """A size x size square of `value` in the bottom-right corner of an image.

  Args:
    feature_shape: shape of one example, e.g. (8, 8), (28, 28, 1) or a flattened (64,).
    size: side of the square, in pixels.
    value: the pixel value stamped (use the data's maximum, e.g. 1.0 for [0, 1] inputs).
    image_shape: the (H, W) layout of a flattened example; default: feature_shape[:2], or for a
      1-D example, its last `size` entries.
  Returns:
    Trigger with mask and value of shape feature_shape.
  """
  cohort.check_int(size, 'size', 1)
  feature_shape = tuple(int(d) for d in feature_shape)
  if image_shape is None and len(feature_shape) >= 2:
    image_shape = feature_shape[:2]
  if image_shape is None:
    mask = np.zeros(feature_shape, bool)
    mask[..., -size:] = True
  else:
    height, width = (int(d) for d in image_shape)
    if size > min(height, width):
      raise ValueError(f'corner_trigger: size={size} exceeds the image ({height}x{width}).')
    square = np.zeros((height, width), bool)
    square[-size:, -size:] = True
    if len(feature_shape) >= 2:
      mask = np.broadcast_to(square.reshape(square.shape + (1,) * (len(feature_shape) - 2)),
                             feature_shape)
    else:
      if height * width != int(np.prod(feature_shape)):
        raise ValueError(f'corner_trigger: image_shape={image_shape} does not match {feature_shape}.')
      mask = square.reshape(feature_shape)
  return Trigger(jnp.asarray(mask), jnp.full(feature_shape, value, jnp.float32))


def stamp(x: jax.Array, trigger: Trigger) -> jax.Array:
  """x [..., *feature_shape] with the trigger applied to every example."""
  return jnp.where(trigger.mask, trigger.value.astype(x.dtype), x)


def backdoor(trigger: Trigger | None = None, target_label: int = 0, num_classes: int = 10,
             poison_fraction: float = 0.5, trigger_size: int = 2,
             trigger_value: float = 1.0) -> DataAttack:
  """Backdoor data poisoning: each Byzantine client stamps the trigger into a random
  `poison_fraction` of its examples and relabels them `target_label`, keeping the rest clean
  (so its update still looks useful).

  Rows are chosen with keys fold_in(rng, client_id), independent of placement.

  Args:
    trigger: the pattern (see `corner_trigger`); None: a `corner_trigger` of `trigger_size` and
      `trigger_value`, built for the data's example shape when first traced.
    target_label: the class the backdoor should produce.
    num_classes: K.
    poison_fraction: fraction of each Byzantine client's examples poisoned, in (0, 1].
    trigger_size, trigger_value: the default trigger's square side and pixel value.
  Returns:
    `fn(round_inputs, rng) -> round_inputs`.
  """
  cohort.check_int(num_classes, 'num_classes', 2)
  check_class(target_label, 'target_label', num_classes)
  if not isinstance(poison_fraction, (int, float)) or not 0 < poison_fraction <= 1:
    raise ValueError(f'backdoor: poison_fraction={poison_fraction!r} must be in (0, 1].')

  if trigger is None:
    cohort.check_int(trigger_size, 'trigger_size', 1)

  def attack(round_inputs, rng):
    data = round_inputs.data
    pattern = trigger if trigger is not None else corner_trigger(data.x.shape[2:], trigger_size, trigger_value)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(round_inputs.client_ids)
    chosen = jax.vmap(lambda k: jax.random.uniform(k, data.y.shape[1:2]) < poison_fraction)(keys)
    poisoned = chosen & round_inputs.byzantine[:, None]
    rows = poisoned.reshape(poisoned.shape + (1,) * (data.x.ndim - 2))
    x = jnp.where(rows, stamp(data.x, pattern), data.x)
    y = jnp.where(poisoned, jnp.asarray(target_label, data.y.dtype), data.y)
    return round_inputs._replace(data=data._replace(x=x, y=y))

  return attack


def backdoor_success(model: models_lib.Model, params, x: jax.Array, y: jax.Array,
                     trigger: Trigger, target_label: int) -> jax.Array:
  """Attack success rate: the fraction of triggered test inputs whose true class is not the target
  that the model classifies as `target_label`.

  Args:
    model, params: the classifier.
    x: [N, *feature_shape] clean test inputs; y: [N] labels.
    trigger, target_label: the backdoor.
  Returns:
    scalar float32 in [0, 1].
  """
  predictions = jnp.argmax(model.apply(params, stamp(jnp.asarray(x), trigger)), axis=-1)
  eligible = jnp.asarray(y) != target_label
  hits = jnp.sum((predictions == target_label) & eligible)
  return cohort.safe_divide(hits.astype(jnp.float32), jnp.sum(eligible).astype(jnp.float32))
