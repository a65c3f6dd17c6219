"""DP-FedAvg through the runner: central DP with a calibrated noise multiplier, epsilon at every evaluation.

  python -m experiments.run --config=configs/dp_fedavg_digits.py --workdir=runs/dp_fedavg_digits
By default the runner samples fixed-size cohorts without replacement, so the accountant is the
replace-one RDP one for `SampledWithoutReplacementDpEvent` (sampling='fixed_size'). The 'poisson'
variant samples each client independently with probability clients_per_round / num_clients
(config.sampling = config.dp.sampling = 'poisson'): add-or-remove-one accounting, tighter, with the
PLD accountant's epsilon reported as well (epsilon_pld). Variants: 'smoke', 'local', 'poisson',
'poisson_smoke'.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = 'dp_fedavg_digits'
  config.seed = 0
  config.rounds = 300
  config.clients_per_round = 100
  config.dropout_rate = 0.0
  config.sampling = 'fixed_size'   # or 'poisson' (config.dp.sampling must match)
  config.sampling_overflow_probability = 1e-9   # poisson: P(members > cohort capacity) per round
  config.eval_every = 25
  config.checkpoint_every = 100
  config.placement = 'auto'
  config.chunk_size = 0
  config.num_devices = 0  # 0: every usable core on CPU (one device each), every device on an accelerator
  config.progress = True

  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 1438, 'partition': 'iid'})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavgm', 'client_optimizer': 'sgd', 'client_lr': 0.5, 'server_optimizer': 'momentum',
      'server_lr': 1.0, 'server_momentum': 0.9, 'local_epochs': 1, 'batch_size': 1, 'prox_mu': 0.0,
      'client_lr_decay': 'none', 'client_lr_decay_rate': 0.0})
  config.aggregator = ml_collections.ConfigDict({'name': 'mean'})
  config.attack = ml_collections.ConfigDict({'name': 'none', 'fraction': 0.0})
  config.compression = ml_collections.ConfigDict({'name': 'none'})
  config.dp = ml_collections.ConfigDict({
      'name': 'central',
      'clip_norm': 0.3,
      'noise_multiplier': 0.0,   # unused when target_epsilon > 0
      'target_epsilon': 8.0,
      'delta': 1e-4,
      'sampling': 'fixed_size',
      'accountant': 'rdp',
  })
  if arg in ('poisson', 'poisson_smoke'):
    config.sampling = 'poisson'
    config.dp.sampling = 'poisson'
  if arg in ('smoke', 'poisson_smoke'):
    config.rounds = 2
    config.eval_every = 1
    config.data.num_clients = 100
    config.clients_per_round = 10
    config.progress = False
    config.dp.target_epsilon = 50.0 if arg == 'smoke' else 8.0  # PLD at tiny sigma takes seconds per call
  elif arg == 'local':
    config.dp.name = 'local'
    config.dp.target_epsilon = 0.0
    config.dp.noise_multiplier = 1.0   # epsilon reported for a client in every round: large
  elif arg not in ('', 'poisson'):
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke', 'local', 'poisson' or 'poisson_smoke'.")
  return config
