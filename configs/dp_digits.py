"""DP-FedAvg on Digits: test accuracy vs epsilon at several clients-per-round (McMahan et al. 2018).

Every one of the 1438 training digits is a client. Each round a Poisson cohort (rate q = m / N) runs
one local SGD step; the server clips, sums, adds N(0, (sigma C)^2) and divides by m (central DP),
then takes a momentum step. One run per (m, target epsilon): sigma is calibrated by the runner
(config.dp.target_epsilon) with the Poisson RDP accountant over `rounds` rounds, and the runner
reports epsilon (and the PLD epsilon) in metrics.jsonl; 'clipped' runs clip without noise.

  python -m experiments.run --config=configs/dp_digits.py --workdir=runs/dp_digits
  python -m experiments.figures.dp_accuracy_vs_epsilon --workdir=runs/dp_digits
Variants: 'small' (the old small), 'smoke'.
"""

import ml_collections

from configs import base


def sweep(clients_per_round, target_epsilons, clipped_baseline: bool):
  runs = []
  for m in clients_per_round:
    if clipped_baseline:  # clipped, noiseless: what clipping alone costs
      runs.append({'name': f'm{m}_clipped', 'overrides': {'clients_per_round': m, 'dp.noise_multiplier': 0.0,
                                                          'dp.target_epsilon': 0.0}})
    for epsilon in target_epsilons:
      runs.append({'name': f'm{m}_eps{epsilon:g}', 'overrides': {'clients_per_round': m,
                                                                 'dp.target_epsilon': epsilon}})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'dp_digits'
  config.rounds = 300
  config.eval_every = 300
  config.checkpoint_every = 100_000
  config.progress = False
  config.sampling = 'poisson'
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 1438, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (32,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.5, 'server_optimizer': 'momentum',
      'server_lr': 1.0, 'server_momentum': 0.9, 'local_epochs': 1, 'batch_size': 1})
  config.dp = ml_collections.ConfigDict({
      'name': 'central', 'clip_norm': 0.3, 'delta': 1e-4,  # delta below 1 / N
      'sampling': 'poisson', 'accountant': 'rdp', 'target_epsilon': 1.0, 'noise_multiplier': 0.0})
  if arg == '':
    config.sweep = sweep((20, 50, 200), (0.5, 1.0, 2.0, 4.0, 8.0, 16.0), True)
  elif arg in ('small', 'smoke'):
    config.data.num_clients = 200
    config.rounds = config.eval_every = 3 if arg == 'small' else 2
    config.sweep = sweep((10,), (8.0,), False)
    if arg == 'smoke':  # a given sigma (no calibration) and the clipped baseline
      config.sweep = sweep((10,), (), True) + ({'name': 'm10_sigma1', 'overrides': {
          'clients_per_round': 10, 'dp.noise_multiplier': 1.0, 'dp.target_epsilon': 0.0}},)
  else:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
