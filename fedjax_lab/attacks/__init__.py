"""Byzantine attacks: update transforms (model poisoning) and data attacks (data poisoning).

`get_attack(name, **kwargs)` returns an `Attack(transform, data_attack)` pair, either part None,
ready for `fedavg(..., transform=..., data_attack=...)`. The runner's registry
(fedjax_lab/runner/registry.py) builds `config.attack` from UPDATE_ATTACKS, DATA_ATTACKS and
`backdoor_boosted`; `config.attack.fraction` (who is Byzantine) is the runner's business, a [K]
mask, so it never changes what is compiled.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from fedjax_lab.attacks.backdoor import Trigger, backdoor, backdoor_success, corner_trigger, stamp
from fedjax_lab.attacks.data import label_flip, targeted_label_flip
from fedjax_lab.attacks.updates import (alie, alie_default_z, gaussian_noise, ipm, mimic,
                                        model_replacement, replace_byzantine, scaled_update,
                                        sign_flip)
from fedjax_lab.transforms.base import Transform


class Attack(NamedTuple):
  """transform: applied to the stacked updates (or None); data_attack: to the cohort's data."""

  transform: Transform | None = None
  data_attack: Callable[[Any, Any], Any] | None = None


def backdoor_boosted(clients_per_round: int, server_lr: float = 1.0, **backdoor_kwargs) -> Attack:
  """Backdoor data poisoning plus model replacement's boost n / server_lr of the poisoned update.

  Args:
    clients_per_round: n, the cohort size.
    server_lr: the server's learning rate the boost undoes.
    **backdoor_kwargs: arguments of `backdoor` (target_label, poison_fraction, trigger_size, ...).
  """
  return Attack(model_replacement(clients_per_round, server_lr), backdoor(**backdoor_kwargs))


UPDATE_ATTACKS: dict[str, Callable[..., Transform]] = {
    'sign_flip': sign_flip,
    'scaled_update': scaled_update,
    'gaussian_noise': gaussian_noise,
    'alie': alie,
    'ipm': ipm,
    'mimic': mimic,
    'model_replacement': model_replacement,
}
DATA_ATTACKS: dict[str, Callable[..., Callable]] = {
    'label_flip': label_flip,
    'targeted_label_flip': targeted_label_flip,
    'backdoor': backdoor,
}
ATTACKS = ('none',) + tuple(UPDATE_ATTACKS) + tuple(DATA_ATTACKS) + ('backdoor_boosted',)


def get_attack(name: str, **kwargs) -> Attack:
  """Builds attack `name` (config.attack.name) with constructor kwargs.

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  if name == 'none':
    return Attack()
  if name in UPDATE_ATTACKS:
    return Attack(transform=UPDATE_ATTACKS[name](**kwargs))
  if name in DATA_ATTACKS:
    return Attack(data_attack=DATA_ATTACKS[name](**kwargs))
  if name == 'backdoor_boosted':
    return backdoor_boosted(**kwargs)
  raise ValueError(f'Unknown attack {name!r} (config.attack.name); choose one of {sorted(ATTACKS)}.')
