"""Data-poisoning attacks: functions `fn(round_inputs, rng) -> round_inputs` applied to the cohort
before local training (FedAvg's `data_attack`).

`round_inputs` is a `RoundInputs`-like NamedTuple with `.data` (FederatedData, x [C, M, ...],
y [C, M]) and `.byzantine` [C] bool; only Byzantine clients' examples change. Padding rows may be
rewritten too; they stay masked out by `num_examples`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from fedjax_lab import cohort

RoundInputs = Any
DataAttack = Callable[[RoundInputs, jax.Array], RoundInputs]


def check_class(value, field, num_classes):
  """Raises ValueError unless `value` is a class index in [0, num_classes) (`field` names it)."""
  cohort.check_int(value, field, 0)
  if value >= num_classes:
    raise ValueError(f'{field}={value} must be < num_classes={num_classes}.')


def _with_labels(round_inputs, labels):
  return round_inputs._replace(data=round_inputs.data._replace(y=labels))


def label_flip(num_classes: int) -> DataAttack:
  """Label flipping: every example of a Byzantine client gets label K - 1 - y.

  Args:
    num_classes: K (>= 2).
  Returns:
    `fn(round_inputs, rng) -> round_inputs` (rng unused).
  """
  cohort.check_int(num_classes, 'num_classes', 2)

  def attack(round_inputs, rng):
    y = round_inputs.data.y
    flipped = (num_classes - 1 - y).astype(y.dtype)
    return _with_labels(round_inputs, jnp.where(round_inputs.byzantine[:, None], flipped, y))

  return attack


def targeted_label_flip(source: int, target: int, num_classes: int) -> DataAttack:
  """Targeted flip (Tolpegin et al., ESORICS 2020): Byzantine clients relabel class `source` as
  `target`; other examples are untouched.
  """
  cohort.check_int(num_classes, 'num_classes', 2)
  check_class(source, 'source', num_classes)
  check_class(target, 'target', num_classes)
  if source == target:
    raise ValueError(f'targeted_label_flip: source and target are both {source}; they must differ.')

  def attack(round_inputs, rng):
    y = round_inputs.data.y
    poisoned = round_inputs.byzantine[:, None] & (y == source)
    return _with_labels(round_inputs, jnp.where(poisoned, jnp.asarray(target, y.dtype), y))

  return attack
