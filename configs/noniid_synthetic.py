"""Study (2), Li et al. (2020): FedAvg on Non-IID Synthetic(alpha, beta) needs a decaying step size.

  python -m experiments.run --config=configs/noniid_synthetic.py --workdir=runs/noniid_synthetic
  python -m experiments.figures.noniid_lr_decay --workdir=runs/noniid_synthetic
Multinomial logistic regression on 30 users (samples capped at 200 per user), 10 per round, E = 5.
One sweep: fixed vs decaying (1 / (1 + rate r)) client lr, E = 1 and E = 20, all clients per round,
FedProx and SCAFFOLD on Synthetic(1, 1); FedAvg vs FedProx on Synthetic(alpha, beta). Every run
records the global training loss sum_k n_k f_k(w) / n after every round (config.evaluation).
Variants: 'small' (the old --small), 'smoke'.
"""

import ml_collections

from configs import base


def sweep(large_epochs, all_clients, prox_mu, decay_rate, alpha_beta):
  runs = [
      {'name': 'fedavg_fixed_lr', 'overrides': {}},
      {'name': 'fedavg_decaying_lr', 'overrides': {'algorithm.client_lr_decay': 'inverse',
                                                   'algorithm.client_lr_decay_rate': decay_rate}},
      {'name': 'fedavg_fixed_lr_E1', 'overrides': {'algorithm.local_epochs': 1}},
      {'name': f'fedavg_fixed_lr_E{large_epochs}', 'overrides': {'algorithm.local_epochs': large_epochs}},
      {'name': 'fedavg_fixed_lr_all_clients', 'overrides': {'clients_per_round': all_clients}},
      {'name': 'fedprox', 'overrides': {'algorithm.name': 'fedprox', 'algorithm.prox_mu': prox_mu}},
      {'name': 'scaffold', 'overrides': {'algorithm.name': 'scaffold'}},
  ]
  for alpha, beta in alpha_beta:
    for name, overrides in (('fedavg', {}), ('fedprox', {'algorithm.name': 'fedprox', 'algorithm.prox_mu': prox_mu})):
      runs.append({'name': f'synthetic_{alpha:g}_{beta:g}_{name}',
                   'overrides': {'data.alpha': alpha, 'data.beta': beta, **overrides}})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'noniid_synthetic'
  config.rounds = 300
  config.eval_every = 1
  config.checkpoint_every = 100_000
  config.progress = False
  config.clients_per_round = 10
  config.data = ml_collections.ConfigDict({'name': 'fedprox_synthetic', 'alpha': 1.0, 'beta': 1.0, 'num_users': 30,
                                           'max_samples_per_user': 200, 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'logistic_regression'})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.05, 'server_optimizer': 'sgd', 'server_lr': 1.0,
      'local_epochs': 5, 'batch_size': 10, 'prox_mu': 0.0, 'client_lr_decay': 'none', 'client_lr_decay_rate': 0.0})
  config.evaluation.global_train_loss = True
  if arg == '':
    config.sweep = sweep(20, 30, 0.1, 0.02, ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0)))
  elif arg in ('small', 'smoke'):
    config.rounds = 4 if arg == 'small' else 2
    config.data.num_users = 6
    config.data.max_samples_per_user = 50
    config.clients_per_round = 3
    config.sweep = sweep(2, 6, 0.1, 0.02, ((1.0, 1.0),))
    if arg == 'smoke':
      config.sweep = tuple(r for r in config.sweep if r['name'] in ('fedavg_fixed_lr', 'fedavg_decaying_lr', 'scaffold'))
  else:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
