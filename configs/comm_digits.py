"""Study (1), McMahan et al. (2017) at small scale: rounds to a target accuracy, FedSGD vs FedAvg(E, B).

  python -m experiments.run --config=configs/comm_digits.py --workdir=runs/comm_digits
  python -m experiments.figures.comm_rounds --workdir=runs/comm_digits
Digits (1438 training images) over 20 clients, an MLP with one hidden layer of 64, C = 0.5. One sweep:
per partition FedSGD and FedAvg over E x B (B = -1 is the full local data set, B = inf in the paper),
then a cohort-fraction sweep on the first partition; test accuracy after every round (eval_every=1),
from which the figure reads rounds to config.study.target. Variants: 'small' (the old --small), 'smoke'.
"""

import ml_collections

from configs import base

# shards: McMahan's pathological split (sort by label, 2 shards per client); dirichlet: label skew.
PARTITIONS = {'iid': {'data.partition': 'iid'},
              'shards': {'data.partition': 'shards', 'data.shards_per_client': 2},
              'dirichlet': {'data.partition': 'dirichlet', 'data.alpha': 0.3}}


def sweep(partitions, local_epochs, batch_sizes, fedsgd_rounds, cohort_fractions, num_clients,
          c_sweep_epochs=5, c_sweep_batch=10):
  runs = []
  for partition in partitions:
    # The whole algorithm section: FedSGD has no client fields (its clients take one full-batch step of
    # size 1), and the registry refuses fields an algorithm does not take.
    runs.append({'name': f'{partition}_fedsgd', 'overrides': {
        **PARTITIONS[partition], 'algorithm': {'name': 'fedsgd', 'server_lr': 0.5}, 'rounds': fedsgd_rounds}})
    for e in local_epochs:
      for b in batch_sizes:
        runs.append({'name': f'{partition}_E{e}_B{"inf" if b == -1 else b}', 'overrides': {
            **PARTITIONS[partition], 'algorithm.local_epochs': e, 'algorithm.batch_size': b}})
  for fraction in cohort_fractions:
    runs.append({'name': f'{partitions[0]}_C{fraction:g}', 'overrides': {
        **PARTITIONS[partitions[0]], 'clients_per_round': max(1, int(round(fraction * num_clients))),
        'algorithm.local_epochs': c_sweep_epochs, 'algorithm.batch_size': c_sweep_batch}})
  return tuple(runs)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.name = 'comm_digits'
  config.rounds = 150
  config.eval_every = 1
  config.checkpoint_every = 100_000  # the final round only
  config.progress = False
  config.clients_per_round = 10
  config.data = ml_collections.ConfigDict({'name': 'digits', 'num_clients': 20, 'partition': 'iid', 'seed': 0})
  config.model = ml_collections.ConfigDict({'name': 'mlp', 'hidden': (64,)})
  config.algorithm = ml_collections.ConfigDict({
      'name': 'fedavg', 'client_optimizer': 'sgd', 'client_lr': 0.05, 'server_optimizer': 'sgd', 'server_lr': 1.0,
      'local_epochs': 1, 'batch_size': 10})
  config.study = ml_collections.ConfigDict({'target': 0.90})
  if arg == '':
    config.sweep = sweep(('iid', 'shards', 'dirichlet'), (1, 5, 20), (-1, 50, 10), 600, (0.05, 0.1, 0.2, 0.5, 1.0), 20)
  elif arg == 'small':
    config.rounds = 5
    config.sweep = sweep(('iid', 'shards'), (1, 5), (10,), 5, (0.5,), 20)
  elif arg == 'smoke':
    config.rounds = 2
    config.sweep = sweep(('iid',), (1,), (10,), 2, (), 20)
  else:
    raise ValueError(f"Unknown config argument {arg!r}; use '', 'small' or 'smoke'.")
  return config
