"""Byzantine attacks: update transforms (model poisoning) and data attacks (data poisoning).

`get_attack(name, **kwargs)` returns an `Attack(transform, data_attack)` pair, either part None,
ready for `fedavg(..., transform=..., data_attack=...)`. The runner reads `config.attack` through
`build_update_attack` and `build_data_attack`; `config.attack.fraction` (who is Byzantine) is
the runner's business, a [K] mask, so it never changes what is compiled.
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


def _backdoor_boosted(clients_per_round: int, server_lr: float = 1.0, **backdoor_kwargs) -> Attack:
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
    return _backdoor_boosted(**kwargs)
  raise ValueError(f'Unknown attack {name!r} (config.attack.name); choose one of {sorted(ATTACKS)}.')


# Fields of config.attack that are not constructor arguments.
_RUN_FIELDS = ('name', 'fraction')


def _config_kwargs(section) -> tuple[str, dict]:
  values = section.to_dict() if hasattr(section, 'to_dict') else dict(section)
  name = values.get('name', 'none')
  if name not in ATTACKS:
    raise ValueError(f'Unknown attack {name!r} (config.attack.name); choose one of {sorted(ATTACKS)}.')
  return name, {k: v for k, v in values.items() if k not in _RUN_FIELDS}


def _split_backdoor_kwargs(kwargs):
  update_fields = ('server_lr',)
  return ({k: v for k, v in kwargs.items() if k in update_fields},
          {k: v for k, v in kwargs.items() if k not in update_fields})


def build_update_attack(section, clients_per_round: int) -> Transform | None:
  """The update transform of `config.attack` (None for 'none' and data-only attacks).

  Args:
    section: config.attack: `name`, `fraction`, and the attack's constructor arguments.
    clients_per_round: n, used by model replacement's boost n / server_lr.
  """
  name, kwargs = _config_kwargs(section)
  if name == 'model_replacement':
    kwargs.setdefault('clients_per_round', clients_per_round)
  if name == 'backdoor_boosted':
    update_kwargs, _ = _split_backdoor_kwargs(kwargs)
    return model_replacement(clients_per_round, **update_kwargs)
  if name in UPDATE_ATTACKS:
    return UPDATE_ATTACKS[name](**kwargs)
  return None


def build_data_attack(section, num_classes: int):
  """The data attack of `config.attack` (None for 'none' and update-only attacks).

  Args:
    section: config.attack: `name`, `fraction`, and the attack's constructor arguments.
    num_classes: K of the data set.
  """
  name, kwargs = _config_kwargs(section)
  if name == 'backdoor_boosted':
    name = 'backdoor'
    _, kwargs = _split_backdoor_kwargs(kwargs)
  if name in DATA_ATTACKS:
    kwargs.setdefault('num_classes', num_classes)
    return DATA_ATTACKS[name](**kwargs)
  return None
