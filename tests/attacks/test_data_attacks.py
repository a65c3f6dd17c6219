"""Data-poisoning attacks: label flips and the backdoor only touch Byzantine clients."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import attacks, models
from fedjax_lab.data.federated import FederatedData


class Inputs(NamedTuple):  # the fields of RoundInputs that data attacks read
  data: FederatedData
  client_ids: jax.Array
  participation: jax.Array
  byzantine: jax.Array


def _inputs(num_clients=4, max_examples=20):
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(num_clients, max_examples, 8, 8)).astype(np.float32) * 0.5
  y = rng.integers(0, 10, (num_clients, max_examples)).astype(np.int32)
  data = FederatedData(jnp.asarray(x), jnp.asarray(y), jnp.full((num_clients,), max_examples, jnp.int32))
  return Inputs(data, jnp.arange(num_clients, dtype=jnp.int32) + 10, jnp.ones(num_clients, bool),
                jnp.asarray([False, True, False, True]))


def test_label_flip():
  inputs = _inputs()
  out = jax.jit(attacks.label_flip(10))(inputs, jax.random.key(0))
  y, new = np.asarray(inputs.data.y), np.asarray(out.data.y)
  byz = np.asarray(inputs.byzantine)
  np.testing.assert_array_equal(new[byz], 9 - y[byz])
  np.testing.assert_array_equal(new[~byz], y[~byz])
  np.testing.assert_array_equal(np.asarray(out.data.x), np.asarray(inputs.data.x))


def test_targeted_label_flip():
  inputs = _inputs()
  out = jax.jit(attacks.targeted_label_flip(source=3, target=8, num_classes=10))(inputs, jax.random.key(0))
  y, new = np.asarray(inputs.data.y), np.asarray(out.data.y)
  byz = np.asarray(inputs.byzantine)[:, None]
  expected = np.where(byz & (y == 3), 8, y)
  np.testing.assert_array_equal(new, expected)
  assert (new != y).sum() == (byz & (y == 3)).sum() > 0


def test_backdoor_stamps_a_fraction_of_byzantine_examples():
  inputs = _inputs()
  trigger = attacks.corner_trigger((8, 8), size=2, value=1.0)
  attack = jax.jit(attacks.backdoor(trigger, target_label=7, num_classes=10, poison_fraction=0.5))
  out = attack(inputs, jax.random.key(1))
  x, new_x = np.asarray(inputs.data.x), np.asarray(out.data.x)
  y, new_y = np.asarray(inputs.data.y), np.asarray(out.data.y)
  byz = np.asarray(inputs.byzantine)
  stamped = np.all(new_x[:, :, -2:, -2:] == 1.0, axis=(2, 3))
  changed = np.any(new_x != x, axis=(2, 3))
  assert not changed[~byz].any() and (new_y[~byz] == y[~byz]).all()
  # Stamped rows are exactly the changed rows, all relabelled 7, and about half of each client's.
  np.testing.assert_array_equal(stamped[byz], changed[byz])
  assert (new_y[byz][stamped[byz]] == 7).all()
  np.testing.assert_array_equal(new_y[byz][~stamped[byz]], y[byz][~stamped[byz]])
  assert 0.25 < stamped[byz].mean() < 0.75
  # Only the trigger pixels differ.
  np.testing.assert_array_equal(new_x[:, :, :6, :], x[:, :, :6, :])
  # Deterministic in the key.
  np.testing.assert_array_equal(np.asarray(attack(inputs, jax.random.key(1)).data.x), new_x)


def test_corner_trigger_layouts():
  flat = attacks.corner_trigger((64,), size=2, image_shape=(8, 8))
  assert np.asarray(flat.mask).reshape(8, 8)[-2:, -2:].all() and np.asarray(flat.mask).sum() == 4
  assert np.asarray(attacks.corner_trigger((40,), size=3).mask)[-3:].all()
  assert np.asarray(attacks.corner_trigger((28, 28, 1), size=3).mask).sum() == 9
  with pytest.raises(ValueError, match='size=9'):
    attacks.corner_trigger((8, 8), size=9)


def test_backdoor_success_counts_non_target_examples():
  model = models.get_model('logistic_regression', (8, 8), 10)
  params = {'Dense_0': {'kernel': jnp.zeros((64, 10)), 'bias': jnp.zeros((10,))}}
  # Bias every prediction toward class 7: success 1 over examples whose label is not 7.
  params['Dense_0']['bias'] = params['Dense_0']['bias'].at[7].set(1.0)
  x = np.zeros((6, 8, 8), np.float32)
  y = np.array([7, 1, 2, 7, 3, 4])
  trigger = attacks.corner_trigger((8, 8))
  success = jax.jit(lambda p, target: attacks.backdoor_success(model, p, x, y, trigger, target))
  assert float(success(params, 7)) == 1.0
  assert float(success(params, 2)) == 0.0


def test_validation():
  with pytest.raises(ValueError, match='num_classes'):
    attacks.label_flip(1)
  with pytest.raises(ValueError, match='must differ'):
    attacks.targeted_label_flip(2, 2, 10)
  with pytest.raises(ValueError, match='target=10'):
    attacks.targeted_label_flip(2, 10, 10)
  trigger = attacks.corner_trigger((8, 8))
  with pytest.raises(ValueError, match='poison_fraction'):
    attacks.backdoor(trigger, 1, 10, poison_fraction=0.0)
  with pytest.raises(ValueError, match='target_label'):
    attacks.backdoor(trigger, -1, 10)
