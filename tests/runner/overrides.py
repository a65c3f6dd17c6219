"""Test helper: set dotted config fields, `with_overrides(config, **{'data.alpha': 0.1})`."""


def with_overrides(config, **overrides):
  """Sets each dotted field of `config` (a ConfigDict) in place and returns it."""
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split('.')
    for part in path:
      target = target[part]
    target[leaf] = value
  return config
