"""DP-FedAvg wiring: local DP, Poisson cohorts, config builders, and FedAvg with the DP pieces."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab.algorithms import fedavg
from fedjax_lab.data import pack_clients, sample_round, to_device
from fedjax_lab.data.sampling import RoundInputs
from fedjax_lab.data.federated import gather_clients
from fedjax_lab.models import models
from fedjax_lab.privacy import accounting, dp
from fedjax_lab.transforms.base import make_context


def _least_squares(num_clients=6, per_client=10, d=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_clients * per_client, d)).astype(np.float32)
  y = (x @ rng.normal(size=d)).astype(np.float32)
  splits = np.array_split(np.arange(len(x)), num_clients)
  return to_device(pack_clients(x, y, splits))


def test_local_dp_clips_then_adds_sigma_c_noise():
  transform = dp.local_dp(clip_norm=2.0, noise_multiplier=0.5)
  updates = {'w': jnp.concatenate([jnp.full((1, 4000), 10.0), jnp.zeros((1, 4000))])}
  ctx = make_context(jnp.ones(2), jax.random.key(0), None)
  out = np.asarray(jax.jit(transform.update)(updates, transform.init(None), ctx)[0]['w'])
  assert np.std(out[1]) == pytest.approx(0.5 * 2.0, rel=0.05)  # noise std sigma * C
  assert np.mean(out[0]) == pytest.approx(2.0 / np.sqrt(4000), abs=4 * 1.0 / np.sqrt(4000))  # clipped first
  with pytest.raises(ValueError, match='clip_norm'):
    dp.local_dp(0.0, 1.0)
  with pytest.raises(ValueError, match='noise_multiplier'):
    dp.local_dp(1.0, -1.0)


def test_participant_mean_ignores_absent_clients():
  agg = dp.participant_mean()
  ctx = make_context(jnp.array([3.0, 0.0, 1.0]), jax.random.key(0), None)
  out, _ = agg.aggregate({'w': jnp.array([[1.0], [jnp.nan], [3.0]])}, (), ctx)
  np.testing.assert_allclose(out['w'], [2.0])


def test_local_dp_epsilon_is_the_gaussian_mechanism_with_half_sigma():
  sigma, rounds, delta = 4.0, 10, 1e-5
  orders = np.array(accounting.dp_rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, np.float64)
  rdp = rounds * orders / (2 * (sigma / 2) ** 2)
  expected = np.min(rdp + np.log1p(-1 / orders) - np.log(delta * orders) / (orders - 1))
  assert dp.local_dp_epsilon(sigma, rounds, delta) == pytest.approx(expected, rel=1e-6)
  assert dp.local_dp_epsilon(sigma, 0, delta) == 0.0
  assert math.isinf(dp.local_dp_epsilon(0.0, 3, delta))


def _inclusion_rates(num_clients, q, capacity, num_rounds, seed):
  """[N] fraction of `num_rounds` Poisson cohorts that include each client."""
  keys = jax.random.split(jax.random.key(seed), num_rounds)
  ids, part = jax.jit(jax.vmap(lambda k: dp.poisson_cohort(k, num_clients, q, capacity)))(keys)
  counts = np.zeros(num_clients)
  np.add.at(counts, np.asarray(ids)[np.asarray(part)], 1.0)
  return counts / num_rounds


def test_poisson_cohort_includes_each_client_with_probability_q():
  num_clients, q = 40, 0.2
  capacity = dp.poisson_capacity(num_clients, q, 1e-9)
  from scipy import stats
  assert stats.binom.sf(capacity, num_clients, q) <= 1e-9
  rates = _inclusion_rates(num_clients, q, capacity, num_rounds=4000, seed=1)
  # Each rate is a mean of 4000 Bernoulli(0.2): std 0.0063; 5 std covers all 40 clients.
  np.testing.assert_allclose(rates, q, atol=0.032)
  assert abs(rates.mean() - q) < 0.005
  ids, part = dp.poisson_cohort(jax.random.key(0), num_clients, q, capacity)
  assert len(set(np.asarray(ids).tolist())) == capacity  # distinct


def test_dp_fedavg_without_noise_and_clipping_is_uniform_fedavg():
  data = _least_squares()
  model = models.linear_regression((4,))
  params = model.init(jax.random.key(0))
  aggregator, transform = dp.dp_fedavg_components(clip_norm=1e6, noise_multiplier=0.0, clients_per_round=6)
  assert transform is None
  private = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, 5, data.max_examples, aggregator=aggregator)
  plain = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, 5, data.max_examples)
  inputs = sample_round(data, jax.random.key(1), 6)
  a, _ = jax.jit(private.step)(private.init(params), inputs, jax.random.key(2))
  b, _ = jax.jit(plain.step)(plain.init(params), inputs, jax.random.key(2))
  # Equal client sizes: the example-weighted mean equals the uniform one.
  np.testing.assert_allclose(a.params['Dense_0']['kernel'], b.params['Dense_0']['kernel'], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('mode', ['central', 'local'])
def test_dp_fedavg_noise_on_the_model_has_the_stated_std(mode):
  data = _least_squares()
  model = models.linear_regression((4,))
  params = model.init(jax.random.key(0))
  clip, sigma, cohort = 0.1, 2.0, 4
  aggregator, transform = dp.dp_fedavg_components(clip, sigma, cohort, mode=mode)
  # Full-batch local steps: the only randomness left in a round is the DP noise.
  algorithm = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, -1, data.max_examples,
                     aggregator=aggregator, transform=transform)
  inputs = sample_round(data, jax.random.key(0), cohort)
  step = jax.jit(lambda key: algorithm.step(algorithm.init(params), inputs, key)[0].params['Dense_0']['kernel'])
  kernels = np.stack([np.asarray(step(jax.random.key(k)))[:, 0] for k in range(64)])  # [64, 4]
  # Central: N(0, (sigma C)^2) on the sum, divided by m. Local: m independent N(0, (sigma C)^2), averaged.
  noise_std = sigma * clip / (cohort if mode == 'central' else np.sqrt(cohort))
  assert np.std(kernels - kernels.mean(0), ddof=1) == pytest.approx(noise_std, rel=0.2)


def test_poisson_cohort_drives_fedavg():
  data = _least_squares(num_clients=12)
  model = models.linear_regression((4,))
  capacity = dp.poisson_capacity(12, 0.25)
  ids, part = dp.poisson_cohort(jax.random.key(3), 12, 0.25, capacity)
  inputs = RoundInputs(gather_clients(data, ids), ids, part, jnp.zeros(capacity, bool))
  aggregator, _ = dp.dp_fedavg_components(1.0, 1.0, clients_per_round=3)
  algorithm = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, 5, data.max_examples, aggregator=aggregator)
  state, metrics = jax.jit(algorithm.step)(algorithm.init(model.init(jax.random.key(0))), inputs, jax.random.key(4))
  assert int(metrics['participants']) == int(np.sum(part))
  assert np.all(np.isfinite(np.asarray(state.params['Dense_0']['kernel'])))


def test_epsilon_reporter_and_noise_calibration():
  report = dp.epsilon_reporter('central', 1.2, clients_per_round=10, num_clients=200, delta=1e-5,
                               sampling='fixed_size')
  assert report(0)['epsilon'] == 0.0
  assert report(30)['epsilon'] == pytest.approx(
      accounting.compute_epsilon(1.2, 200, 10, 30, 1e-5, sampling='fixed_size'), rel=1e-9)
  sigma = dp.resolve_noise_multiplier(target_epsilon=2.0, num_clients=200, clients_per_round=10, rounds=30,
                                      delta=1e-5, sampling='poisson')
  report = dp.epsilon_reporter('central', sigma, clients_per_round=10, num_clients=200, sampling='poisson')(30)
  eps = report['epsilon']
  assert report['epsilon_pld'] < eps  # PLD is reported beside RDP for Poisson sampling, and is tighter
  assert eps == pytest.approx(2.0, rel=1e-2) and eps <= 2.0
  assert dp.resolve_noise_multiplier(3.0) == 3.0
  local = dp.epsilon_reporter('local', 3.0, clients_per_round=10, num_clients=200)
  assert local(5)['epsilon'] == pytest.approx(dp.local_dp_epsilon(3.0, 5, 1e-5))
  assert dp.check_sampling(None, 'poisson') == 'poisson'


@pytest.mark.parametrize('call,match', [
    (lambda: dp.check_sampling('poisson', 'fixed_size'), 'config.dp.sampling'),
    (lambda: dp.resolve_noise_multiplier(), 'noise_multiplier'),
    (lambda: dp.resolve_noise_multiplier(target_epsilon=1.0), 'rounds'),
    (lambda: dp.epsilon_reporter('central', 1.0, clients_per_round=10, num_clients=200, delta=1.5), 'delta'),
    (lambda: dp.epsilon_reporter('shuffle', 1.0, clients_per_round=10, num_clients=200), 'config.dp.name'),
])
def test_accounting_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_component_errors():
  with pytest.raises(ValueError, match='mode'):
    dp.dp_fedavg_components(1.0, 1.0, 10, mode='shuffle')
  with pytest.raises(ValueError, match='clip_norm'):
    dp.local_dp(-1.0, 1.0)
