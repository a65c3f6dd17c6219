"""Study (4): unstable clients (dropout, a round deadline) with unbalanced (log-normal) client sizes.

  python -m experiments.run --config=configs/unstable_digits.py --workdir=runs/unstable_digits
  python -m experiments.figures.unstable_clients --workdir=runs/unstable_digits
Deadlines are quantiles of the simulated times of all clients (examples x E x seconds_per_example x
log-normal speed, 64 draws per client with numpy seed config.seed), computed here from the data's
client sizes. Variants: 'small' (the old --small), 'smoke'.
"""

import ml_collections
import numpy as np

from configs import base


def deadline_seconds(data: ml_collections.ConfigDict, local_epochs: int, seconds_per_example: float,
                     speed_sigma: float, quantiles, seed: int) -> list[float]:
  """The simulated-time quantiles of every client (a median-speed device on each, 64 draws)."""
  from fedjax_lab.data import datasets  # pylint: disable=g-import-not-at-top
  fields = {k: v for k, v in data.to_dict().items() if k != 'name'}
  sizes = np.asarray(datasets.load_dataset(data.name, **fields).train.num_examples)
  rng = np.random.default_rng(seed)
  times = sizes * local_epochs * seconds_per_example * np.exp(speed_sigma * rng.standard_normal((64, sizes.size)))
  return [float(np.quantile(times, q)) for q in quantiles]


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'unstable_digits'
  config.rounds = 100
  config.eval_every = 1
  config.checkpoint_every = 100_000
  config.progress = False
  config.clients_per_round = 10
  config.seconds_per_example = 1e-3
  config.speed_sigma = 0.5
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 30, 'partition': 'quantity_skew',
                                           'sigma': 1.0, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.05, 'server_optimizer': 'sgd', 'server_lr': 1.0,
      'local_epochs': 2, 'batch_size': 10})
  config.study = ml_collections.ConfigDict({'target': 0.9})
  dropout_rates, quantiles = (0.0, 0.3, 0.6), (0.8, 0.5, 0.2)
  if arg == 'small':
    config.rounds = 3
    dropout_rates, quantiles = (0.0,), (0.5,)
  elif arg == 'smoke':
    config.rounds = 2
    dropout_rates, quantiles = (0.3,), (0.5,)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  deadlines = deadline_seconds(config.data, config.algorithm.local_epochs, config.seconds_per_example,
                               config.speed_sigma, quantiles, config.seed)
  config.sweep = tuple(
      [{'name': f'dropout_{p:g}', 'overrides': {'dropout_rate': p}} for p in dropout_rates]
      + [{'name': f'deadline_q{int(100 * q)}', 'overrides': {'deadline': d}} for q, d in zip(quantiles, deadlines)])
  return config
