"""Privacy accounting for client-level DP-FedAvg, a thin layer over `dp-accounting`.

One round of DP-FedAvg is a subsampled Gaussian mechanism: a cohort is sampled from the
`num_clients` clients, each participant's update is clipped to L2 norm `clip_norm` (C), the clipped
updates are summed, and Gaussian noise of standard deviation `noise_multiplier * clip_norm`
(sigma * C) is added to the sum. `rounds` rounds compose. Two samplings are supported, each with
the accountant and neighbouring relation under which its analysis holds:

  'poisson'     every client joins independently with probability q = clients_per_round /
                num_clients (the cohort size is random; the server divides by the expected size
                q * num_clients). Neighbours differ by adding or removing one client, so the
                sum's L2 sensitivity is C and the mechanism is
                `PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`. RDP (Mironov, Talwar &
                Zhang 2019) or PLD (privacy loss distributions; tighter) accountant.
  'fixed_size'  exactly clients_per_round distinct clients, uniformly without replacement: what
                `fedjax_lab.data.sampling.sample_round` does. The analysis (Wang, Balle &
                Kasiviswanathan 2019, Thm. 27) is for neighbours that *replace* one client, so the
                sum's sensitivity is 2C and the Gaussian's effective noise multiplier is sigma / 2:
                `SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(sigma / 2))` with
                `RdpAccountant(neighboring_relation=REPLACE_ONE)`. dp-accounting 0.6 has no PLD
                for it. Replace-one epsilons are not comparable with add/remove ones (replacing
                is removing then adding), so this epsilon is much larger than the Poisson one.

RDP is converted to (epsilon, delta) by dp-accounting's `compute_epsilon`: the bound of Balle et
al. 2020 (Prop. 12) / Asoodeh et al. 2020, minimised over dp-accounting's default orders. It is
tighter than the conversion eps = rdp(alpha) + log(1/delta) / (alpha - 1) of the moments
accountant era, which is why Abadi et al.'s eps ~ 1.26 (q = 0.01, sigma = 4, 10^4 steps,
delta = 1e-5) comes out as ~1.04 (RDP) and ~0.95 (PLD) today.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import dp_accounting
from dp_accounting import pld as dp_pld
from dp_accounting import rdp as dp_rdp

SAMPLINGS = ('poisson', 'fixed_size')
ACCOUNTANTS = ('rdp', 'pld')


def validate_noise_multiplier(noise_multiplier: float, field: str = 'config.dp.noise_multiplier') -> None:
  if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
    raise ValueError(f'{field}={noise_multiplier} must be a finite number >= 0 (the noise standard '
                     'deviation divided by the clip norm).')


def validate_delta(delta: float, field: str = 'config.dp.delta') -> None:
  if not 0.0 < delta < 1.0:
    raise ValueError(f'{field}={delta} must lie in (0, 1); a common choice is below 1 / num_clients.')


def validate_sampling(num_clients: int, clients_per_round: int, sampling: str, accountant: str = 'rdp') -> None:
  """Raises ValueError, naming the config field, for an unsupported sampling/accountant pair."""
  if sampling not in SAMPLINGS:
    raise ValueError(f'config.dp.sampling={sampling!r} must be one of {SAMPLINGS}.')
  if accountant not in ACCOUNTANTS:
    raise ValueError(f'config.dp.accountant={accountant!r} must be one of {ACCOUNTANTS}.')
  if num_clients < 1:
    raise ValueError(f'config.data.num_clients={num_clients} must be >= 1.')
  if not 1 <= clients_per_round <= num_clients:
    raise ValueError(f'config.clients_per_round={clients_per_round} must lie in [1, num_clients={num_clients}].')
  if sampling == 'fixed_size' and accountant == 'pld':
    raise ValueError("config.dp.accountant='pld' does not support sampling='fixed_size' in dp-accounting "
                     "0.6; use accountant='rdp' or sampling='poisson'.")


def validate_rounds(rounds: int) -> None:
  if rounds < 0:
    raise ValueError(f'config.rounds={rounds} must be >= 0.')


def dp_event(noise_multiplier: float, num_clients: int, clients_per_round: int, rounds: int,
             sampling: str = 'poisson') -> dp_accounting.DpEvent:
  """The DpEvent of `rounds` rounds of DP-FedAvg (see the module docstring).

  Args:
    noise_multiplier: sigma; the noise on the sum has standard deviation sigma * clip_norm.
    num_clients: N, the population.
    clients_per_round: m; the expected cohort size under Poisson sampling (q = m / N).
    rounds: T.
    sampling: 'poisson' or 'fixed_size'.

  Returns:
    a dp_accounting.DpEvent.
  """
  validate_noise_multiplier(noise_multiplier)
  validate_sampling(num_clients, clients_per_round, sampling)
  validate_rounds(rounds)
  if sampling == 'poisson':
    step = dp_accounting.PoissonSampledDpEvent(
        clients_per_round / num_clients, dp_accounting.GaussianDpEvent(noise_multiplier))
  else:
    # Replace-one neighbours: the clipped sum moves by up to 2 C, so the effective multiplier halves.
    step = dp_accounting.SampledWithoutReplacementDpEvent(
        num_clients, clients_per_round, dp_accounting.GaussianDpEvent(noise_multiplier / 2))
  return dp_accounting.SelfComposedDpEvent(step, rounds)


def make_accountant(sampling: str = 'poisson', accountant: str = 'rdp') -> dp_accounting.PrivacyAccountant:
  """A fresh dp-accounting accountant with the neighbouring relation `sampling` needs."""
  validate_sampling(1, 1, sampling, accountant)
  if accountant == 'pld':
    return dp_pld.PLDAccountant()
  relation = (dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE if sampling == 'poisson'
              else dp_accounting.NeighboringRelation.REPLACE_ONE)
  return dp_rdp.RdpAccountant(neighboring_relation=relation)


def compute_epsilon(noise_multiplier: float, num_clients: int, clients_per_round: int, rounds: int,
                    delta: float, sampling: str = 'poisson', accountant: str = 'rdp') -> float:
  """epsilon at `delta` after `rounds` rounds of DP-FedAvg.

  Args:
    noise_multiplier: sigma >= 0 (0 gives inf unless rounds = 0).
    num_clients: N.
    clients_per_round: m (expected cohort size for Poisson sampling).
    rounds: T >= 0.
    delta: in (0, 1).
    sampling: 'poisson' or 'fixed_size'.
    accountant: 'rdp' or 'pld' (Poisson only).

  Returns:
    epsilon (float; inf when sigma = 0 and T > 0).
  """
  validate_delta(delta)
  validate_sampling(num_clients, clients_per_round, sampling, accountant)
  event = dp_event(noise_multiplier, num_clients, clients_per_round, rounds, sampling)
  if rounds == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  acc = make_accountant(sampling, accountant)
  acc.compose(event)
  return float(acc.get_epsilon(delta))


def calibrate_noise_multiplier(target_epsilon: float, num_clients: int, clients_per_round: int,
                               rounds: int, delta: float, sampling: str = 'poisson',
                               accountant: str = 'rdp', min_noise_multiplier: float = 0.1,
                               max_noise_multiplier: float = 100.0, rtol: float = 1e-3) -> float:
  """The smallest sigma in [min, max] (up to rtol) whose epsilon after `rounds` rounds <= target.

  epsilon decreases in sigma, so a geometric bracket search from sigma = 1 followed by bisection
  in log(sigma) finds it; the search starts near 1 because the PLD accountant is slow for tiny
  sigma. It stops once epsilon(sigma) lies in [(1 - rtol) * target, target].

  Args:
    target_epsilon: > 0.
    num_clients, clients_per_round, rounds, delta, sampling, accountant: as in `compute_epsilon`.
    min_noise_multiplier: lower end of the search; returned as is if it already meets the target.
    max_noise_multiplier: upper end; if even this sigma gives epsilon > target, the target cannot
      be met and ValueError says what to change.
    rtol: relative tolerance on epsilon.

  Returns:
    sigma (float) with target * (1 - rtol) <= epsilon(sigma) <= target, or min_noise_multiplier.
  """
  if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
    raise ValueError(f'config.dp.target_epsilon={target_epsilon} must be a finite number > 0.')
  validate_delta(delta)
  validate_sampling(num_clients, clients_per_round, sampling, accountant)
  validate_rounds(rounds)
  if not 0 < min_noise_multiplier < max_noise_multiplier:
    raise ValueError(f'Need 0 < min_noise_multiplier={min_noise_multiplier} < '
                     f'max_noise_multiplier={max_noise_multiplier}.')
  if not 0 < rtol < 1:
    raise ValueError(f'rtol={rtol} must lie in (0, 1).')
  epsilon_of = lambda s: compute_epsilon(s, num_clients, clients_per_round, rounds, delta, sampling, accountant)
  if rounds == 0:
    return float(min_noise_multiplier)
  # Bracket: lo violates the target (or is the minimum), hi meets it.
  sigma = min(max(1.0, min_noise_multiplier), max_noise_multiplier)
  eps = epsilon_of(sigma)
  if eps > target_epsilon:
    lo = sigma
    while eps > target_epsilon:
      if sigma >= max_noise_multiplier:
        raise ValueError(
            f'config.dp.target_epsilon={target_epsilon} cannot be met in config.rounds={rounds} with '
            f'clients_per_round={clients_per_round} of num_clients={num_clients} ({sampling} sampling): '
            f'even noise_multiplier={max_noise_multiplier} gives epsilon={eps:.4g} at delta={delta}. '
            'Lower config.rounds or config.clients_per_round, or raise the target.')
      lo, sigma = sigma, min(2 * sigma, max_noise_multiplier)
      eps = epsilon_of(sigma)
    hi, hi_eps = sigma, eps
  else:
    hi, hi_eps = sigma, eps
    while True:
      if hi <= min_noise_multiplier:
        return float(min_noise_multiplier)
      sigma = max(hi / 2, min_noise_multiplier)
      eps = epsilon_of(sigma)
      if eps > target_epsilon:
        lo = sigma
        break
      hi, hi_eps = sigma, eps
  while hi_eps < (1 - rtol) * target_epsilon and hi / lo > 1 + 1e-9:
    mid = math.sqrt(lo * hi)
    eps = epsilon_of(mid)
    if eps > target_epsilon:
      lo = mid
    else:
      hi, hi_eps = mid, eps
  return float(hi)


class PrivacySpec(NamedTuple):
  """What the accountant needs to report epsilon as training goes on.

  Attributes:
    noise_multiplier: sigma.
    num_clients: N.
    clients_per_round: m.
    delta: target delta.
    sampling: 'poisson' or 'fixed_size'.
    accountant: 'rdp' or 'pld'.
  """

  noise_multiplier: float
  num_clients: int
  clients_per_round: int
  delta: float
  sampling: str = 'poisson'
  accountant: str = 'rdp'

  def validate(self) -> 'PrivacySpec':
    validate_noise_multiplier(self.noise_multiplier)
    validate_delta(self.delta)
    validate_sampling(self.num_clients, self.clients_per_round, self.sampling, self.accountant)
    return self

  def epsilon(self, rounds: int) -> float:
    """epsilon at `delta` after `rounds` rounds (call at every evaluation)."""
    return compute_epsilon(self.noise_multiplier, self.num_clients, self.clients_per_round, rounds,
                           self.delta, self.sampling, self.accountant)
