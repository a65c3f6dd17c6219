"""Finds every aggregator and transform builder, so the contract tests cover new ones unasked.

A builder is a public function whose return annotation is `Aggregator` (or `Transform`), defined
in a module of the packages below. Its required arguments are filled by parameter name from
`ARGUMENTS`; each boolean argument with a default is run both ways (`weighted`, `rotate`,
`error_feedback`, ...). A new builder with a required argument not in `ARGUMENTS` fails loudly:
add a small value for it there.

Config parsers (`build*`, or a `section` argument) and dispatchers by name (a `name` argument)
are left out: they only choose among the builders found here. So are combinators, whose arguments
are functions or transforms (`chain`, `stateless`, `per_client_transform`).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil

NUM_CLIENTS = 16  # the cohort C of the contract tests (Bulyan with f=2 needs 11 present)
NUM_PARAMS = 9    # total parameters of contracts' PARAMS (kernel 3x2 + bias 2 + scale)

ARGUMENTS = {
    'f': 2, 'beta': 0.2, 'tau': 1.0, 'max_norm': 1.0, 'clip_norm': 1.0, 'noise_multiplier': 0.5,
    'expected_clients_per_round': float(NUM_CLIENTS), 'stddev': 0.1, 'bits': 4, 'k': 3,
    'num_params': NUM_PARAMS, 'num_clients': NUM_CLIENTS, 'clients_per_round': NUM_CLIENTS,
}
# Builders with optional arguments of which one must be given (trimmed_mean: beta or f).
CHOSEN = {'aggregators.coordinatewise.trimmed_mean': {'beta': 0.2}}
PACKAGES = ('fedjax_lab.aggregators', 'fedjax_lab.transforms', 'fedjax_lab.attacks', 'fedjax_lab.privacy')


def _modules():
  for package_name in PACKAGES:
    package = importlib.import_module(package_name)
    yield package
    for info in pkgutil.iter_modules(package.__path__):
      yield importlib.import_module(f'{package_name}.{info.name}')


def _is_builder(fn, kind: str) -> bool:
  annotation = inspect.signature(fn).return_annotation
  if annotation != kind and getattr(annotation, '__name__', None) != kind:
    return False
  if fn.__name__.startswith(('_', 'build')):
    return False
  for parameter in inspect.signature(fn).parameters.values():
    text = str(parameter.annotation)
    if parameter.name in ('section', 'name') or 'Callable' in text or 'Transform' in text:
      return False
  return True


def builders(kind: str) -> dict[str, object]:
  """'module.function' -> builder, for every builder returning `kind` ('Aggregator' or 'Transform')."""
  found = {}
  for module in _modules():
    for fn_name, fn in vars(module).items():
      if inspect.isfunction(fn) and fn.__module__ == module.__name__ and _is_builder(fn, kind):
        found[f'{module.__name__.removeprefix("fedjax_lab.")}.{fn.__name__}'] = fn
  return dict(sorted(found.items()))


def cases(kind: str) -> dict[str, object]:
  """'builder[flag=value,...]' -> zero-argument function building one variant."""
  out = {}
  for name, fn in builders(kind).items():
    parameters = inspect.signature(fn).parameters.values()
    required = {}
    for p in parameters:
      if p.default is inspect.Parameter.empty:
        if p.name not in ARGUMENTS:
          raise KeyError(f'{name} needs argument {p.name!r}: add a small value to ARGUMENTS in '
                         'tests/contracts/registered.py.')
        required[p.name] = ARGUMENTS[p.name]
    required.update(CHOSEN.get(name, {}))
    flags = [p.name for p in parameters if isinstance(p.default, bool)]
    for values in itertools.product((False, True), repeat=len(flags)):
      kwargs = dict(required, **dict(zip(flags, values)))
      label = name + (f'[{",".join(f"{k}={v}" for k, v in zip(flags, values))}]' if flags else '')
      out[label] = (lambda fn=fn, kwargs=kwargs: fn(**kwargs))
  return out
