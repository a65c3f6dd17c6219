"""Straggler distributions: shapes, moments, determinism, validation."""

import numpy as np
import pytest

from fedjax_lab import systems


def test_none_and_fixed_are_deterministic_factors():
  np.testing.assert_array_equal(systems.sample_slowdowns(systems.StragglerModel(), 3, 4, 0), np.ones((3, 4)))
  slow = systems.sample_slowdowns(systems.fixed(2, 10.0), 5, 4, 0)
  np.testing.assert_array_equal(slow, np.tile([10.0, 10.0, 1.0, 1.0], (5, 1)))


@pytest.mark.parametrize('model, mean', [
    (systems.bernoulli(0.25, 10.0), 1 + 0.25 * 9),
    (systems.StragglerModel('exponential', scale=0.5), 1.5),
    (systems.StragglerModel('half_normal', scale=0.5), 1 + 0.5 * np.sqrt(2 / np.pi)),
    (systems.StragglerModel('lognormal', scale=0.5), np.exp(0.5**2 / 2)),
])
def test_random_models_have_the_stated_mean(model, mean):
  draws = systems.sample_slowdowns(model, 4000, 8, 1)
  assert draws.shape == (4000, 8)
  assert np.all(draws > 0)
  np.testing.assert_allclose(draws.mean(), mean, rtol=0.03)


def test_same_seed_same_draws():
  model = systems.StragglerModel('lognormal', scale=1.0)
  np.testing.assert_array_equal(systems.sample_slowdowns(model, 6, 3, 7), systems.sample_slowdowns(model, 6, 3, 7))
  assert not np.array_equal(systems.sample_slowdowns(model, 6, 3, 7), systems.sample_slowdowns(model, 6, 3, 8))


@pytest.mark.parametrize('model, field', [
    (systems.StragglerModel('pareto'), 'distribution'),
    (systems.fixed(1, 0.5), 'factor'),
    (systems.fixed(5, 2.0), 'num_slow'),
    (systems.fixed(-1, 2.0), 'num_slow'),
    (systems.bernoulli(1.5, 2.0), 'probability'),
    (systems.StragglerModel('exponential', scale=-1.0), 'scale'),
])
def test_rejects_bad_models(model, field):
  with pytest.raises(ValueError, match=field):
    systems.sample_slowdowns(model, 2, 4, 0)


def test_rejects_no_workers():
  with pytest.raises(ValueError, match='num_workers'):
    systems.sample_slowdowns(systems.StragglerModel(), 2, 0, 0)
