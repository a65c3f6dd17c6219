"""Accounting agrees with dp-accounting, with an independent numpy RDP, and with published values."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld as dp_pld
from dp_accounting import rdp as dp_rdp
from scipy.special import gammaln, logsumexp

from fedjax_lab.privacy import accounting

DELTA = 1e-5


def _numpy_rdp_poisson(q, sigma, orders):
  """RDP of the Poisson-subsampled Gaussian at integer orders (Mironov, Talwar & Zhang 2019, Sec. 3.3)."""
  out = []
  for a in orders:
    k = np.arange(a + 1)
    log_terms = (gammaln(a + 1) - gammaln(k + 1) - gammaln(a - k + 1) + (a - k) * np.log1p(-q)
                 + k * np.log(q) + (k * k - k) / (2 * sigma * sigma))
    out.append(logsumexp(log_terms) / (a - 1))
  return np.array(out)


def _modern_conversion(orders, rdp, delta):
  orders = np.asarray(orders, np.float64)
  return float(np.min(rdp + np.log1p(-1 / orders) - np.log(delta * orders) / (orders - 1)))


def _classic_conversion(orders, rdp, delta):
  orders = np.asarray(orders, np.float64)
  return float(np.min(rdp + np.log(1 / delta) / (orders - 1)))


def test_known_values_rdp_and_pld():
  # q = 256/60000, sigma = 1.1, 14063 steps (DP-SGD on MNIST, 60 epochs).
  rdp = accounting.compute_epsilon(1.1, 60000, 256, 14063, DELTA)
  pld = accounting.compute_epsilon(1.1, 60000, 256, 14063, DELTA, accountant='pld')
  assert rdp == pytest.approx(2.597, rel=1e-3)
  assert pld == pytest.approx(2.38, rel=1e-2)
  assert pld < rdp  # PLD is the tighter accountant.


@pytest.mark.parametrize('num_clients,clients_per_round,sigma,rounds', [
    (60000, 256, 1.1, 14063), (1000, 50, 0.8, 300), (100, 100, 3.0, 50), (500, 1, 0.6, 1000)])
def test_equals_dp_accounting_rdp(num_clients, clients_per_round, sigma, rounds):
  ours = accounting.compute_epsilon(sigma, num_clients, clients_per_round, rounds, DELTA)
  acc = dp_rdp.RdpAccountant()
  acc.compose(dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(clients_per_round / num_clients, dp_accounting.GaussianDpEvent(sigma)),
      rounds))
  assert ours == pytest.approx(acc.get_epsilon(DELTA), rel=1e-2)


def test_rdp_matches_independent_numpy_reference_and_abadi_conversion():
  # Abadi et al. (2016): q = 0.01, sigma = 4, 10^4 steps, delta = 1e-5 reported eps ~ 1.26.
  orders = np.arange(2, 257)
  rdp = 10000 * _numpy_rdp_poisson(0.01, 4.0, orders)
  classic = _classic_conversion(orders, rdp, DELTA)
  modern = _modern_conversion(orders, rdp, DELTA)
  assert classic == pytest.approx(1.26, abs=0.01)  # the older conversion reproduces the paper
  ours = accounting.compute_epsilon(4.0, 10000, 100, 10000, DELTA)
  assert ours == pytest.approx(modern, rel=1e-2)  # today's conversion, independent arithmetic
  assert ours < 1.1 < classic
  assert accounting.compute_epsilon(4.0, 10000, 100, 10000, DELTA, accountant='pld') < ours


def test_full_participation_closed_form():
  # q = 1: RDP(alpha) = T alpha / (2 sigma^2) exactly.
  orders = np.array(dp_rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, np.float64)
  sigma, rounds = 2.0, 40
  expected = _modern_conversion(orders, rounds * orders / (2 * sigma ** 2), DELTA)
  assert accounting.compute_epsilon(sigma, 10, 10, rounds, DELTA) == pytest.approx(expected, rel=1e-6)


def test_fixed_size_event_is_replace_one_with_half_sigma():
  event = accounting.dp_event(1.2, 1000, 50, 20, sampling='fixed_size')
  assert isinstance(event.event, dp_accounting.SampledWithoutReplacementDpEvent)
  assert event.event.event.noise_multiplier == pytest.approx(0.6)
  acc = dp_rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
  acc.compose(event)
  ours = accounting.compute_epsilon(1.2, 1000, 50, 20, DELTA, sampling='fixed_size')
  assert ours == pytest.approx(acc.get_epsilon(DELTA), rel=1e-9)
  assert ours > accounting.compute_epsilon(1.2, 1000, 50, 20, DELTA)  # replace-one costs more


def test_epsilon_grows_with_rounds_and_edge_cases():
  spec = accounting.PrivacySpec(1.0, 1000, 20, DELTA).validate()
  values = [spec.epsilon(t) for t in (0, 10, 100, 1000)]
  assert values[0] == 0.0
  assert all(a < b for a, b in zip(values, values[1:]))
  assert math.isinf(accounting.compute_epsilon(0.0, 1000, 20, 5, DELTA))
  assert isinstance(accounting.make_accountant('poisson', 'pld'), dp_pld.PLDAccountant)


@pytest.mark.parametrize('target,sampling', [(2.0, 'poisson'), (0.5, 'poisson'), (8.0, 'fixed_size')])
def test_calibration_within_one_percent(target, sampling):
  sigma = accounting.calibrate_noise_multiplier(target, 1000, 50, 200, DELTA, sampling=sampling, rtol=5e-3)
  eps = accounting.compute_epsilon(sigma, 1000, 50, 200, DELTA, sampling=sampling)
  assert eps <= target * (1 + 1e-9)
  assert eps == pytest.approx(target, rel=1e-2)


def test_calibration_returns_minimum_when_target_is_loose():
  assert accounting.calibrate_noise_multiplier(1e6, 1000, 10, 10, DELTA) == pytest.approx(0.1)


@pytest.mark.parametrize('kwargs,match', [
    (dict(noise_multiplier=-0.1), 'noise_multiplier'),
    (dict(noise_multiplier=float('nan')), 'noise_multiplier'),
    (dict(delta=0.0), 'delta'),
    (dict(delta=1.0), 'delta'),
    (dict(delta=-1e-5), 'delta'),
    (dict(clients_per_round=0), 'clients_per_round'),
    (dict(clients_per_round=2000), 'clients_per_round'),
    (dict(rounds=-1), 'rounds'),
    (dict(sampling='shuffle'), 'sampling'),
    (dict(accountant='moments'), 'accountant'),
    (dict(sampling='fixed_size', accountant='pld'), 'pld'),
])
def test_bad_input_raises(kwargs, match):
  args = dict(noise_multiplier=1.0, num_clients=1000, clients_per_round=10, rounds=10, delta=DELTA)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    accounting.compute_epsilon(**args)


def test_unreachable_target_raises():
  with pytest.raises(ValueError, match='cannot be met in config.rounds=1000'):
    accounting.calibrate_noise_multiplier(1e-3, 100, 100, 1000, DELTA, max_noise_multiplier=50.0)
  with pytest.raises(ValueError, match='target_epsilon'):
    accounting.calibrate_noise_multiplier(0.0, 100, 10, 10, DELTA)
  with pytest.raises(ValueError, match='delta'):
    accounting.calibrate_noise_multiplier(1.0, 100, 10, 10, 2.0)
