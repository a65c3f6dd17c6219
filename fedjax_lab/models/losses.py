"""Per-example losses and metrics, and their masked means over a padded batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """logits [B, K], integer labels [B] -> [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """logits [B, K], labels [B] -> [B] float32 (1 where the arg-max is the label)."""
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """predictions [B] or [B, 1], targets [B] -> [B]: 0.5 * (prediction - target)^2."""
  predictions = predictions.reshape(targets.shape)
  return 0.5 * jnp.square(predictions - targets)


def masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of values [B] over rows where mask [B] is True; 0 for an all-False mask."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  count = jnp.sum(mask)
  return jnp.sum(values * mask) / jnp.maximum(count, 1.0)
