"""Cohort sampling: Poisson inclusion rate, capacity and its overflow, fixed_size unchanged, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.data import sampling


def _draws(num_rounds, num_clients, clients_per_round, dropout_rate=0.0, how='poisson', capacity=None):
  """The runner's draw for `num_rounds` round keys at once (one jitted vmap): Cohort, leaves [R, C]."""
  keys = jax.random.split(jax.random.key(0), num_rounds)
  draw = lambda k: sampling.sample_cohort(k, num_clients, clients_per_round, dropout_rate, sampling=how,
                                          capacity=capacity)
  return jax.device_get(jax.jit(jax.vmap(draw))(keys))


def test_poisson_includes_each_client_with_probability_q():
  num_clients, clients_per_round, rounds = 40, 8, 4000
  q = clients_per_round / num_clients
  capacity = sampling.cohort_capacity(num_clients, clients_per_round, 'poisson')
  cohort = _draws(rounds, num_clients, clients_per_round, capacity=capacity)
  assert cohort.client_ids.shape == (rounds, capacity) and capacity > clients_per_round
  counts = np.zeros(num_clients)
  np.add.at(counts, cohort.client_ids[cohort.participation], 1)
  # Every client: binomial(rounds, q), std sqrt(q (1 - q) / rounds) = 0.0063; 5 std over 40 clients.
  np.testing.assert_allclose(counts / rounds, q, atol=5 * np.sqrt(q * (1 - q) / rounds))
  members = cohort.participation.sum(axis=1)
  assert abs(members.mean() - clients_per_round) < 0.15 and members.std() == pytest.approx(
      np.sqrt(num_clients * q * (1 - q)), rel=0.1)
  # Members come first, ids are distinct real clients, non-members never count.
  assert np.all(np.diff(cohort.participation.astype(int), axis=1) <= 0)
  assert all(len(set(row)) == capacity for row in cohort.client_ids[:50])


def test_poisson_dropout_removes_members_only():
  cohort = _draws(2000, 30, 6, dropout_rate=0.5)
  assert cohort.participation.sum(axis=1).mean() == pytest.approx(3.0, abs=0.15)


def test_capacity_bounds_the_overflow_and_extra_members_are_dropped():
  capacity = sampling.poisson_capacity(100, 0.1, 1e-9)
  assert capacity == 32
  from scipy import stats
  assert stats.binom.sf(capacity, 100, 0.1) <= 1e-9 < stats.binom.sf(capacity - 1, 100, 0.1)
  assert sampling.cohort_capacity(100, 10, 'fixed_size') == 10
  assert sampling.cohort_capacity(10, 10, 'poisson') == 10  # q = 1: every client, every round
  # A too small array keeps the `capacity` members with the smallest draws and drops the rest.
  small = _draws(500, 40, 20, capacity=10)
  assert np.mean(small.participation.all(axis=1)) > 0.99


def test_fixed_size_draw_is_unchanged():
  key = jax.random.key(3)
  cohort = sampling.sample_cohort(key, 20, 5, 0.3)
  sample_key, dropout_key = jax.random.split(key)
  np.testing.assert_array_equal(cohort.client_ids, sampling.sample_client_ids(sample_key, 20, 5))
  np.testing.assert_array_equal(cohort.participation, jax.random.uniform(dropout_key, (5,)) >= 0.3)


def test_lazy_and_gathered_poisson_rounds_agree():
  data = sampling.FederatedData(jnp.arange(12 * 2 * 3.0).reshape(12, 2, 3), jnp.zeros((12, 2), jnp.int32),
                                jnp.full((12,), 2, jnp.int32))
  key = jax.random.key(1)
  gathered = sampling.sample_round(data, key, 3, sampling='poisson', capacity=7)
  lazy = sampling.sample_round(data, key, 3, sampling='poisson', capacity=7, gather=False)
  for a, b in zip(jax.tree.leaves(gathered), jax.tree.leaves(sampling.materialize(lazy))):
    np.testing.assert_array_equal(a, b)
  assert gathered.data.x.shape == (7, 2, 3)


@pytest.mark.parametrize('how, overflow, match', [
    ('uniform', 1e-9, 'config.sampling='),
    ('poisson', 0.0, 'config.sampling_overflow_probability'),
    ('poisson', 1.0, 'config.sampling_overflow_probability'),
])
def test_bad_sampling_fields(how, overflow, match):
  with pytest.raises(ValueError, match=match):
    sampling.cohort_capacity(100, 10, how, overflow)
