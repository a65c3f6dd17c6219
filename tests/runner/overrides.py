"""Test helpers: set dotted config fields (`with_overrides(config, **{'data.alpha': 0.1})`), and the tiny
digits FedAvg run the runner tests share (`tiny_digits_config`)."""


def with_overrides(config, **overrides):
  """Sets each dotted field of `config` (a ConfigDict) in place and returns it."""
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split('.')
    for part in path:
      target = target[part]
    target[leaf] = value
  return config


def tiny_digits_config(**overrides):
  """fedavg_mnist1d:smoke on digits: 12 IID clients, 4 per round, an MLP with 8 hidden units (seconds)."""
  from configs import fedavg_mnist1d  # pylint: disable=g-import-not-at-top
  config = fedavg_mnist1d.get_config('smoke')
  config.data.name = 'digits'
  config.data.num_clients = 12
  config.data.partition = 'iid'
  config.clients_per_round = 4
  config.model.hidden = (8,)
  return with_overrides(config, **overrides)
