"""Federated-learning studies at small scale on offline data.

  comm         McMahan et al. (2017): rounds to a target test accuracy for FedSGD vs FedAvg over
               E x B, on IID, pathological 2-shards-per-client and Dirichlet partitions, plus a
               cohort-fraction sweep; prints "rounds to target, x speedup over FedSGD".
  noniid       Li et al. (2020): fixed vs decaying (1 / (1 + rate r)) client lr on Non-IID
               Synthetic(1, 1); effect of E and of partial participation; FedProx and SCAFFOLD;
               FedAvg vs FedProx on Synthetic(0,0), (0.5,0.5), (1,1).
  compression  accuracy vs uploaded bytes for b-bit quantization (with and without rotation) and
               top-k with and without error feedback.
  unstable     dropout rates and round deadlines on unbalanced (log-normal size) clients: accuracy
               and the share of server weight that the largest clients get.

  python -m experiments.fl_studies --study=comm --outdir=runs/fl_studies
Each study writes <outdir>/<study>.json (curves and tables) and <study>.md (the printed table);
the figure scripts experiments/figures/{comm,noniid,compression,unstable}_*.py read the JSON. Study
settings live in configs/{comm,noniid,compression,unstable}_*.py. `--small` shrinks every size.

The simulation loop here is the runner's (sample a cohort, one algorithm step, all rounds in one
jitted lax.scan) with two additions the runner does not have: the test accuracy (and optionally
the global training loss) after every round, for rounds-to-target, and a deadline mask.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.data import datasets as datasets_lib
from fedjax_lab.data import deadline as deadline_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.models import models as models_lib
from fedjax_lab.runner import registry
from fedjax_lab.transforms import compression as compression_lib

STUDIES = ('comm', 'noniid', 'compression', 'unstable')


# ---------------------------------------------------------------------------------------------
# The simulation loop.


def simulate(algorithm, model, train: FederatedData, test_x, test_y, rounds: int, clients_per_round: int,
             seed: int = 0, dropout_rate: float = 0.0, deadline: float | None = None,
             deadline_kwargs: dict | None = None, eval_train: bool = False) -> dict[str, np.ndarray]:
  """Runs `rounds` rounds as one jitted scan and returns per-round metrics ([rounds] numpy arrays).

  Args:
    algorithm: an Algorithm over RoundInputs.
    model: the model (for evaluation).
    train: FederatedData, leaves [K, ...].
    test_x, test_y: centralized test set [N, ...], [N].
    rounds: R.
    clients_per_round: C.
    seed: init and sampling seed.
    dropout_rate: probability that a sampled client never reports.
    deadline: simulated seconds; clients past it are dropped (None: no deadline).
    deadline_kwargs: local_epochs, seconds_per_example, speed_sigma of `deadline.simulated_times`.
    eval_train: also record the global training loss sum_k n_k f_k(w) / n after each round.

  Returns:
    dict with test_accuracy, test_loss, train_loss (cohort), participants, bytes_up, weight_share
    (fraction of this round's server weight on the clients in the top size quintile) and, when
    asked, global_train_loss; all [R].
  """
  if deadline is not None:
    deadline_lib.validate_deadline(deadline)
  sampling.validate_sampling(train.num_clients, clients_per_round, dropout_rate)
  data = FederatedData(*(jnp.asarray(a) for a in train))
  sizes = np.asarray(train.num_examples)
  large = jnp.asarray(sizes >= np.quantile(sizes, 0.8))
  init_key, base_key = jax.random.split(jax.random.key(seed))
  state = algorithm.init(model.init(init_key))
  run_all = _compiled_run(algorithm, model, rounds, clients_per_round, dropout_rate, deadline,
                          tuple(sorted((deadline_kwargs or {}).items())), eval_train)
  _, history = run_all(state, base_key, data, jnp.asarray(test_x), jnp.asarray(test_y), large)
  return {k: np.asarray(v) for k, v in jax.device_get(history).items()}


# One compiled scan per (algorithm, model, static settings): the seeds of a study, which differ only
# in the arrays passed, share it. Keyed by object identity; the entry keeps both objects alive.
_COMPILED: dict[tuple, tuple[Any, Any, Callable]] = {}


def _compiled_run(algorithm, model, rounds, clients_per_round, dropout_rate, deadline, deadline_items,
                  eval_train) -> Callable:
  key = (id(algorithm), id(model), rounds, clients_per_round, dropout_rate, deadline, deadline_items, eval_train)
  if key in _COMPILED:
    return _COMPILED[key][2]
  deadline_kwargs = dict(deadline_items)

  @jax.jit
  def run_all(state, base_key, data, test_x, test_y, large):
    mask = data.mask()

    def one_round(state, r):
      key = jax.random.fold_in(base_key, r)
      sample_key, step_key, deadline_key = jax.random.split(key, 3)
      inputs = sampling.sample_round(data, sample_key, clients_per_round, dropout_rate)
      if deadline is not None:
        inputs = deadline_lib.apply_deadline(inputs, deadline_key, deadline, **deadline_kwargs)
      state, metrics = algorithm.step(state, inputs, step_key)
      weights = inputs.data.num_examples * inputs.participation
      total = jnp.maximum(jnp.sum(weights), 1)
      out = {
          'train_loss': metrics['train_loss'],
          'participants': metrics['participants'],
          'bytes_up': _bytes_sent(state, metrics),
          'weight_share': jnp.sum(weights * jnp.take(large, inputs.client_ids)) / total,
      }
      test = models_lib.evaluate(model, state.params, test_x, test_y)
      out['test_loss'], out['test_accuracy'] = test['loss'], test['accuracy']
      if eval_train:
        losses = jax.vmap(lambda x, y, m: models_lib.batch_loss(model, state.params, x, y, m))(
            data.x, data.y, mask)
        out['global_train_loss'] = jnp.sum(losses * data.num_examples) / jnp.sum(data.num_examples)
      return state, out

    return jax.lax.scan(one_round, state, jnp.arange(rounds))

  _COMPILED[key] = (algorithm, model, run_all)
  return run_all


def _bytes_sent(state, metrics):
  """Uploaded bytes: the compressor's own count when the transform is one, else float32 models."""
  transform_state = state.transform_state
  if hasattr(transform_state, 'bytes_sent'):
    return transform_state.bytes_sent
  return metrics['bytes_up']


def rounds_to_target(accuracy: np.ndarray, target: float) -> int | None:
  """1-based first round whose test accuracy reaches target; None if never."""
  hits = np.flatnonzero(np.asarray(accuracy) >= target)
  return int(hits[0]) + 1 if hits.size else None


def _model(config: ml_collections.ConfigDict, dataset) -> models_lib.Model:
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
  if 'hidden' in kwargs:
    kwargs['hidden'] = tuple(kwargs['hidden'])
  return models_lib.get_model(config.model.name, dataset.input_shape, dataset.num_classes, **kwargs)


def _fedavg(model, train, client_lr, local_epochs, batch_size, server_lr=1.0, **kwargs):
  return fedavg(model, optax.sgd(client_lr), optax.sgd(server_lr), local_epochs, batch_size, train.max_examples,
                **kwargs)


def _curve(history: dict, *keys) -> dict:
  return {k: history[k].tolist() for k in keys if k in history}


# ---------------------------------------------------------------------------------------------
# (1) Communication efficiency (McMahan et al. 2017).


def study_comm(config: ml_collections.ConfigDict) -> dict:
  """Rounds to config.target for FedSGD and FedAvg(E, B) per partition, and a C sweep."""
  results: dict[str, Any] = {'target': config.target, 'rows': [], 'c_sweep': [], 'curves': {}}
  for partition in config.partitions:
    kwargs = dict(config.data.to_dict())
    kwargs.update(partition=partition, **config.partition_kwargs.get(partition, {}))
    dataset = datasets_lib.load_dataset(**kwargs)
    model = _model(config, dataset)
    train = dataset.train
    mean_n = float(np.mean(np.asarray(train.num_examples)))
    num_params = models_lib.num_params(model.init(jax.random.key(0)))
    runs = [('FedSGD', None, None)] + [('FedAvg', e, b) for e in config.local_epochs for b in config.batch_sizes]
    fedsgd_rounds = None
    for name, e, b in runs:
      if name == 'FedSGD':
        algorithm = fedsgd(model, optax.sgd(config.fedsgd_lr), train.max_examples)
        rounds = config.fedsgd_rounds
      else:
        algorithm = _fedavg(model, train, config.client_lr, e, b)
        rounds = config.rounds
      history = simulate(algorithm, model, train, dataset.test_x, dataset.test_y, rounds,
                         config.clients_per_round, seed=config.seed)
      r = rounds_to_target(history['test_accuracy'], config.target)
      if name == 'FedSGD':
        fedsgd_rounds = r
      # u = E n / B local updates per round (FedSGD: 1); B = -1 is the full batch.
      updates = 1.0 if name == 'FedSGD' else e * (1.0 if b == -1 else np.ceil(mean_n / b))
      label = 'FedSGD' if name == 'FedSGD' else f'FedAvg E={e} B={"inf" if b == -1 else b}'
      row = {
          'partition': partition, 'algorithm': label, 'E': e, 'B': b, 'u': float(updates),
          'rounds': r, 'speedup': (fedsgd_rounds / r) if (r and fedsgd_rounds) else None,
          'final_accuracy': float(history['test_accuracy'][-1]),
          'max_rounds': rounds,
          'mbytes_up_to_target': (r * config.clients_per_round * 4 * num_params / 1e6) if r else None,
      }
      results['rows'].append(row)
      results['curves'][f'{partition}/{label}'] = _curve(history, 'test_accuracy')
      print(f'  {partition:9s} {label:22s} rounds={r} final acc={row["final_accuracy"]:.3f}', flush=True)
    if partition == config.partitions[0]:
      for fraction in config.cohort_fractions:
        cohort = max(1, int(round(fraction * train.num_clients)))
        e, b = config.c_sweep_epochs, config.c_sweep_batch
        history = simulate(_fedavg(model, train, config.client_lr, e, b), model, train, dataset.test_x,
                           dataset.test_y, config.rounds, cohort, seed=config.seed)
        results['c_sweep'].append({'partition': partition, 'C': fraction, 'clients_per_round': cohort,
                                   'rounds': rounds_to_target(history['test_accuracy'], config.target)})
  results['markdown'] = comm_markdown(results)
  return results


def comm_markdown(results: dict) -> str:
  partitions = list(dict.fromkeys(row['partition'] for row in results['rows']))
  algorithms = list(dict.fromkeys(row['algorithm'] for row in results['rows']))
  cell = {(row['partition'], row['algorithm']): row for row in results['rows']}

  def fmt(row):
    if row['rounds'] is None:
      return f'> {row["max_rounds"]}'
    speed = f' ({row["speedup"]:.1f}x)' if row['speedup'] else ''
    return f'{row["rounds"]}{speed}'

  lines = [f'Rounds to {results["target"]:.0%} test accuracy (x speedup over FedSGD)', '',
           '| algorithm | u | ' + ' | '.join(partitions) + ' |', '|---|---|' + '---|' * len(partitions)]
  for name in algorithms:
    u = cell[(partitions[0], name)]['u']
    lines.append(f'| {name} | {u:.0f} | ' + ' | '.join(fmt(cell[(p, name)]) for p in partitions) + ' |')
  if results.get('c_sweep'):
    lines += ['', 'Cohort fraction C (FedAvg, first partition): rounds to target', '',
              '| C | clients/round | rounds |', '|---|---|---|']
    for row in results['c_sweep']:
      lines.append(f'| {row["C"]} | {row["clients_per_round"]} | {row["rounds"]} |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# (2) Non-IID convergence (Li et al. 2020).


def study_noniid(config: ml_collections.ConfigDict) -> dict:
  """Fixed vs decaying lr, E, participation, FedProx, SCAFFOLD on Synthetic; the alpha/beta sweep."""
  dataset = datasets_lib.load_dataset(**config.data.to_dict())
  model = _model(config, dataset)
  train = dataset.train
  decay = lambda r: 1.0 / (1.0 + config.client_lr_decay_rate * r)
  common = dict(rounds=config.rounds, seed=config.seed, eval_train=True)
  lr, e, b, c = config.client_lr, config.local_epochs, config.batch_size, config.clients_per_round
  runs = {
      'FedAvg fixed lr': (_fedavg(model, train, lr, e, b), c),
      'FedAvg decaying lr': (_fedavg(model, train, lr, e, b, client_lr_schedule=decay), c),
      'FedAvg fixed lr, E=1': (_fedavg(model, train, lr, 1, b), c),
      f'FedAvg fixed lr, E={config.large_epochs}': (_fedavg(model, train, lr, config.large_epochs, b), c),
      f'FedAvg fixed lr, all {train.num_clients} clients': (_fedavg(model, train, lr, e, b), train.num_clients),
      f'FedProx mu={config.prox_mu}': (_fedavg(model, train, lr, e, b, prox_mu=config.prox_mu), c),
      'SCAFFOLD': (scaffold(model, lr, optax.sgd(1.0), e, b, train.max_examples, train.num_clients), c),
  }
  results: dict[str, Any] = {'curves': {}, 'final': {}}
  for name, (algorithm, cohort) in runs.items():
    history = simulate(algorithm, model, train, dataset.test_x, dataset.test_y, clients_per_round=cohort, **common)
    results['curves'][name] = _curve(history, 'global_train_loss', 'test_accuracy')
    results['final'][name] = {'global_train_loss': _tail_mean(history['global_train_loss']),
                              'test_accuracy': _tail_mean(history['test_accuracy'])}
    print(f'  {name:34s} final loss={results["final"][name]["global_train_loss"]:.4f} '
          f'acc={results["final"][name]["test_accuracy"]:.3f}', flush=True)
  fixed = results['final']['FedAvg fixed lr']['global_train_loss']
  decayed = results['final']['FedAvg decaying lr']['global_train_loss']
  results['decay_margin'] = fixed - decayed
  results['synthetic'] = {}
  for alpha, beta in config.alpha_beta:
    kwargs = dict(config.data.to_dict(), alpha=alpha, beta=beta)
    ds = datasets_lib.load_dataset(**kwargs)
    key = f'({alpha},{beta})'
    results['synthetic'][key] = {}
    for name, mu in (('FedAvg', 0.0), (f'FedProx mu={config.prox_mu}', config.prox_mu)):
      history = simulate(_fedavg(model, ds.train, lr, e, b, prox_mu=mu), model, ds.train, ds.test_x, ds.test_y,
                         clients_per_round=c, **common)
      results['synthetic'][key][name] = _curve(history, 'global_train_loss', 'test_accuracy')
  results['markdown'] = noniid_markdown(results)
  return results


def _tail_mean(values, fraction: float = 0.1) -> float:
  values = np.asarray(values)
  return float(values[-max(1, int(len(values) * fraction)):].mean())


def noniid_markdown(results: dict) -> str:
  lines = ['Synthetic(1,1), mean of the last 10% of rounds', '', '| run | global train loss | test accuracy |',
           '|---|---|---|']
  for name, final in results['final'].items():
    lines.append(f'| {name} | {final["global_train_loss"]:.4f} | {final["test_accuracy"]:.3f} |')
  lines += ['', f'Decaying lr lowers the final global training loss by {results["decay_margin"]:.4f} '
            '(fixed minus decaying).', '', '| Synthetic(alpha,beta) | run | final loss | final accuracy |',
            '|---|---|---|---|']
  for key, runs in results['synthetic'].items():
    for name, curve in runs.items():
      lines.append(f'| {key} | {name} | {_tail_mean(curve["global_train_loss"]):.4f} | '
                   f'{_tail_mean(curve["test_accuracy"]):.3f} |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# (3) Compression.


def study_compression(config: ml_collections.ConfigDict) -> dict:
  """Final accuracy and total uploaded bytes for each compressor in config.compressors."""
  dataset = datasets_lib.load_dataset(**config.data.to_dict())
  model = _model(config, dataset)
  train = dataset.train
  num_params = models_lib.num_params(model.init(jax.random.key(0)))
  rows = []
  for section in config.compressors:
    section = dict(section)
    transform = (None if section['name'] == 'none' else registry.build_section(
        'config.compressors', 'compressor', registry.COMPRESSORS, section,
        {'num_params': num_params, 'num_clients': train.num_clients}))
    accuracies = []
    algorithm = _fedavg(model, train, config.client_lr, config.local_epochs, config.batch_size, transform=transform)
    for seed in range(config.seeds):  # the seeds share one compiled run
      history = simulate(algorithm, model, train, dataset.test_x, dataset.test_y,
                         config.rounds, config.clients_per_round, seed=seed)
      accuracies.append(_tail_mean(history['test_accuracy'], 0.05))
      total_bytes = float(np.sum(history['bytes_up']))
      expected = float(np.sum(history['participants'])) * compression_lib.bytes_per_client(num_params=num_params, **section)
      assert abs(total_bytes - expected) <= 1e-6 * expected, (total_bytes, expected)
    rows.append({'compressor': _label(section), **section, 'accuracy': float(np.mean(accuracies)),
                 'accuracy_std': float(np.std(accuracies)), 'mbytes_up': total_bytes / 1e6,
                 'bytes_per_client': compression_lib.bytes_per_client(num_params=num_params, **section)})
    print(f'  {rows[-1]["compressor"]:28s} acc={rows[-1]["accuracy"]:.4f} MB up={rows[-1]["mbytes_up"]:.3f}',
          flush=True)
  dense = rows[0]
  for row in rows:
    row['bytes_ratio'] = dense['bytes_per_client'] / row['bytes_per_client']
    row['accuracy_drop_points'] = 100 * (dense['accuracy'] - row['accuracy'])
  results = {'num_params': num_params, 'rows': rows}
  results['markdown'] = compression_markdown(results)
  return results


def _label(section: dict) -> str:
  if section['name'] == 'none':
    return 'float32 (none)'
  if section['name'] == 'quantize':
    return f'{section["bits"]}-bit' + (' + rotation' if section.get('rotate') else '')
  fraction = section.get('fraction')
  return f'top-{fraction:.0%}' + (' + EF' if section.get('error_feedback', True) else ' no EF')


def compression_markdown(results: dict) -> str:
  lines = [f'Model size D = {results["num_params"]}; accuracy = mean over seeds of the last 5% of rounds', '',
           '| compressor | bytes/client | x fewer bytes | accuracy | drop (points) |', '|---|---|---|---|---|']
  for row in results['rows']:
    lines.append(f'| {row["compressor"]} | {row["bytes_per_client"]} | {row["bytes_ratio"]:.1f} | '
                 f'{row["accuracy"]:.4f} | {row["accuracy_drop_points"]:+.2f} |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# (4) Unstable clients.


def study_unstable(config: ml_collections.ConfigDict) -> dict:
  """Dropout rates and deadlines (as quantiles of the simulated times) on unbalanced clients."""
  dataset = datasets_lib.load_dataset(**config.data.to_dict())
  model = _model(config, dataset)
  train = dataset.train
  sizes = np.asarray(train.num_examples)
  large = sizes >= np.quantile(sizes, 0.8)
  deadline_kwargs = dict(local_epochs=config.local_epochs, seconds_per_example=config.seconds_per_example,
                         speed_sigma=config.speed_sigma)
  # Deadlines as quantiles of the simulated times of all clients (a median-speed device on each).
  rng = np.random.default_rng(config.seed)
  times = sizes * config.local_epochs * config.seconds_per_example * np.exp(
      config.speed_sigma * rng.standard_normal((64, sizes.size)))
  results: dict[str, Any] = {'data_share_large': float(sizes[large].sum() / sizes.sum()), 'curves': {}, 'rows': []}
  settings = [(f'dropout {p:.0%}', p, None) for p in config.dropout_rates]
  settings += [(f'deadline q{int(100 * q)}', 0.0, float(np.quantile(times, q))) for q in config.deadline_quantiles]
  algorithm = _fedavg(model, train, config.client_lr, config.local_epochs, config.batch_size)
  for name, dropout, deadline in settings:
    history = simulate(algorithm, model, train, dataset.test_x, dataset.test_y, config.rounds,
                       config.clients_per_round, seed=config.seed, dropout_rate=dropout, deadline=deadline,
                       deadline_kwargs=deadline_kwargs)
    results['curves'][name] = _curve(history, 'test_accuracy', 'participants')
    row = {'setting': name, 'dropout_rate': dropout, 'deadline': deadline,
           'final_accuracy': _tail_mean(history['test_accuracy']),
           'mean_participants': float(history['participants'].mean()),
           'weight_share_large': float(history['weight_share'].mean()),
           'rounds_to_target': rounds_to_target(history['test_accuracy'], config.target)}
    results['rows'].append(row)
    print(f'  {name:16s} acc={row["final_accuracy"]:.3f} participants={row["mean_participants"]:.1f} '
          f'large-client weight={row["weight_share_large"]:.3f}', flush=True)
  results['target'] = config.target
  results['markdown'] = unstable_markdown(results)
  return results


def unstable_markdown(results: dict) -> str:
  lines = [f'Largest 20% of clients hold {results["data_share_large"]:.1%} of the data.', '',
           f'| setting | participants/round | server weight on largest 20% | rounds to {results["target"]:.0%} | '
           'final accuracy |', '|---|---|---|---|---|']
  for row in results['rows']:
    lines.append(f'| {row["setting"]} | {row["mean_participants"]:.1f} | {row["weight_share_large"]:.3f} | '
                 f'{row["rounds_to_target"]} | {row["final_accuracy"]:.3f} |')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Entry point.

CONFIGS = {'comm': 'configs/comm_digits.py', 'noniid': 'configs/noniid_synthetic.py',
           'compression': 'configs/compression_digits.py', 'unstable': 'configs/unstable_digits.py'}
RUNNERS: dict[str, Callable[[ml_collections.ConfigDict], dict]] = {
    'comm': study_comm, 'noniid': study_noniid, 'compression': study_compression, 'unstable': study_unstable}


def load_config(study: str, small: bool = False) -> ml_collections.ConfigDict:
  import importlib
  module = importlib.import_module(CONFIGS[study][:-3].replace('/', '.'))
  return module.get_config('small' if small else '')


def run_study(study: str, outdir: str, small: bool = False) -> dict:
  """Runs one study and writes <outdir>/<study>.json and .md; returns the results."""
  if study not in RUNNERS:
    raise ValueError(f'--study={study!r}; choose one of {list(STUDIES)}.')
  config = load_config(study, small)
  tic = time.time()
  print(f'{study}:', flush=True)
  results = RUNNERS[study](config)
  results['seconds'] = time.time() - tic
  results['machine'] = f'{os.cpu_count()} CPU cores, jax {jax.__version__}, {jax.devices()[0].platform}'
  results['config'] = config.to_dict()
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, f'{study}.json'), 'w') as f:
    json.dump(results, f, indent=1, default=str)
  with open(os.path.join(outdir, f'{study}.md'), 'w') as f:
    f.write(results['markdown'] + '\n')
  print(results['markdown'])
  print(f'({results["seconds"]:.0f} s on {results["machine"]})')
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--study', default='all', help=f'one of {list(STUDIES)} or all')
  parser.add_argument('--outdir', default='runs/fl_studies')
  parser.add_argument('--small', action='store_true', help='tiny sizes (a smoke test)')
  args = parser.parse_args(argv)
  for study in (STUDIES if args.study == 'all' else args.study.split(',')):
    run_study(study, args.outdir, args.small)


if __name__ == '__main__':
  main()
