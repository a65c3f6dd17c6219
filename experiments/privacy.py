"""Privacy studies: gradient inversion, defences against it, and DP-FedAvg's accuracy-vs-epsilon.

  python -m experiments.privacy --study=progress   # DLG/iDLG snapshots        -> runs/privacy/progress.json
  python -m experiments.privacy --study=defenses   # quality vs defence, + acc -> runs/privacy/defenses.json
  python -m experiments.privacy --study=dp         # accuracy vs epsilon       -> runs/privacy/dp.json
  python -m experiments.privacy --study=all [--config_arg=small]

Configs: configs/dlg_digits.py (progress, defenses) and configs/dp_digits.py (dp). The figure
scripts experiments/figures/{dlg_progress,privacy_defenses,dp_accuracy_vs_epsilon}.py read the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab.algorithms import fedavg, fedsgd
from fedjax_lab.data import datasets
from fedjax_lab.data.federated import gather_clients, to_device
from fedjax_lab.data.sampling import RoundInputs, sample_round
from fedjax_lab.models import models as models_lib
from fedjax_lab.privacy import accounting, defenses, dp, inversion

STUDIES = ('progress', 'defenses', 'dp')


def _model(section, input_shape, num_classes=10):
  return models_lib.get_model(section.name, tuple(input_shape), num_classes, hidden=tuple(section.hidden))


def _digits():
  from sklearn.datasets import load_digits
  bunch = load_digits()
  return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int32)


def _attack(config, simulate, observed, batch_size, input_shape, labels=None, seed=1,
            x_init_range=(0.0, 1.0), optimizer=None, snapshots=False):
  a = config.attack
  return inversion.invert(simulate, observed, jax.random.key(seed), batch_size, input_shape, 10, labels=labels,
                          optimizer=optimizer or a.optimizer, num_steps=a.num_steps,
                          num_snapshots=a.num_snapshots, learning_rate=a.adam_learning_rate,
                          x_init_range=x_init_range, snapshot_steps=a.snapshot_steps if snapshots else None)


def _scenario_row(name, x, y, result, data_range=(0.0, 1.0)):
  quality = inversion.reconstruction_quality(x, result.x, y, result.labels, data_range=data_range)
  order = quality.assignment  # reconstruction matched to true example i
  history = np.asarray(result.history)[:, order]
  return {
      'name': name,
      'x_true': np.asarray(x).tolist(),
      'y_true': np.asarray(y).tolist(),
      'history': history.tolist(),
      'history_steps': np.asarray(result.history_steps).tolist(),
      'labels': np.asarray(result.labels)[order].tolist(),
      'losses': np.asarray(result.losses).tolist(),
      'mse': quality.mse, 'psnr': quality.psnr, 'label_accuracy': quality.label_accuracy,
  }


# ----------------------------------------------------------------------------- progress


def progress_study(config) -> dict:
  """DLG/iDLG on one-example FedSGD gradients, a small batch, a FedAvg update (and MNIST-1D)."""
  x, y = _digits()
  model = _model(config.model, (8, 8))
  params = model.init(jax.random.key(config.seed))
  onehot = lambda labels: jax.nn.one_hot(jnp.asarray(labels), 10)
  rows = []
  simulate = inversion.make_observation_fn(model, params, 'fedsgd')
  for i in config.progress.examples:
    observed = simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    label = inversion.idlg_label(inversion.last_dense_kernel(observed))
    result = _attack(config, simulate, observed, 1, (8, 8), labels=label[None], snapshots=True)
    rows.append(_scenario_row(f'iDLG, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
    result = _attack(config, simulate, observed, 1, (8, 8), snapshots=True)
    rows.append(_scenario_row(f'DLG, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
  i = config.progress.examples[0]
  if config.progress.adam:
    observed = simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    result = _attack(config, simulate, observed, 1, (8, 8), optimizer='adam', snapshots=True)
    rows.append(_scenario_row(f'DLG with Adam, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
  b = config.progress.batch_size
  if b:
    start = max(config.progress.examples) + 1
    xb, yb = x[start:start + b], y[start:start + b]
    result = _attack(config, simulate, simulate(jnp.asarray(xb), onehot(yb)), b, (8, 8), snapshots=True)
    rows.append(_scenario_row(f'DLG, FedSGD, batch of {b}', xb, yb, result))
  steps, lr = config.progress.fedavg_local_steps, config.progress.fedavg_client_lr
  if steps:
    fedavg_simulate = inversion.make_observation_fn(model, params, 'fedavg', local_steps=steps, client_lr=lr)
    observed = fedavg_simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    label = inversion.idlg_label(-inversion.last_dense_kernel(observed))
    result = _attack(config, fedavg_simulate, observed, 1, (8, 8), labels=label[None], snapshots=True)
    rows.append(_scenario_row(f'iDLG, FedAvg update ({steps} local steps)', x[i:i + 1], y[i:i + 1], result))
  if config.progress.mnist1d:
    arrays = datasets.mnist1d_arrays()
    x1, y1 = arrays['x'][:1], arrays['y'][:1]
    model1 = _model(config.model, (40,))
    simulate1 = inversion.make_observation_fn(model1, model1.init(jax.random.key(config.seed)), 'fedsgd')
    observed = simulate1(jnp.asarray(x1), onehot(y1))
    label = inversion.idlg_label(inversion.last_dense_kernel(observed))
    data_range = (float(arrays['x'].min()), float(arrays['x'].max()))
    result = _attack(config, simulate1, observed, 1, (40,), labels=label[None], x_init_range=(-1.0, 1.0),
                     snapshots=True)
    rows.append(_scenario_row('iDLG, FedSGD, 1 example (MNIST-1D)', x1, y1, result, data_range))
  return {'model': config.model.to_dict(), 'attack': config.attack.to_dict(), 'rows': rows}


# ----------------------------------------------------------------------------- defences


def _train_fedsgd(config, transform, num_clients=None, seed=0) -> float:
  """Test accuracy of FedSGD on digits with `transform` applied to every client's gradient."""
  t = config.training
  data_kwargs = dict(t.data)
  if num_clients is not None:
    data_kwargs['num_clients'] = num_clients
  name = data_kwargs.pop('name')
  ds = datasets.load_dataset(name, **data_kwargs)
  train = to_device(ds.train)
  model = _model(config.model, ds.input_shape)
  algorithm = fedsgd(model, optax.sgd(t.server_lr), train.max_examples, transform=transform)
  cohort = min(t.clients_per_round, train.num_clients)

  def one_round(state, key):
    sample_key, step_key = jax.random.split(key)
    state, metrics = algorithm.step(state, sample_round(train, sample_key, cohort), step_key)
    return state, metrics['train_loss']

  @jax.jit
  def run(params):
    keys = jax.random.split(jax.random.key(seed + 1), t.rounds)
    return jax.lax.scan(one_round, algorithm.init(params), keys)[0].params

  params = run(model.init(jax.random.key(seed)))
  metrics = models_lib.evaluate(model, params, jnp.asarray(ds.test_x), jnp.asarray(ds.test_y))
  return float(metrics['accuracy'])


def defense_study(config) -> dict:
  """Attack quality and FedSGD accuracy vs the strength of each defence."""
  x, y = _digits()
  model = _model(config.model, (8, 8))
  params = model.init(jax.random.key(config.seed))
  num_params = models_lib.num_params(params)
  simulate = inversion.make_observation_fn(model, params, 'fedsgd')
  onehot = lambda labels: jax.nn.one_hot(jnp.asarray(labels), 10)
  n = config.defenses.examples_per_point
  rows = []
  for name in ('noise', 'clip', 'topk', 'quantize'):
    for strength in config.defenses[name]:
      tic = time.time()
      qualities = []
      for i in range(n):
        sent = defenses.defend(simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1])), name, strength,
                               jax.random.key(1000 + i))
        result = _attack(config, simulate, sent, 1, (8, 8), seed=1 + i)
        qualities.append(inversion.reconstruction_quality(x[i:i + 1], result.x, y[i:i + 1], result.labels))
      accuracy = _train_fedsgd(config, defenses.defense_transform(name, strength, num_params), seed=config.seed)
      rows.append(_defense_row(name, strength, qualities, accuracy))
      print('%s %s: mse %.4g, accuracy %.3f (%.1fs)' % (name, strength, rows[-1]['mse'], accuracy,
                                                        time.time() - tic), flush=True)
  num_train = 1438
  for batch in config.defenses.batch:
    qualities = []
    for i in range(n):
      xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
      result = _attack(config, simulate, simulate(jnp.asarray(xb), onehot(yb)), batch, (8, 8), seed=1 + i)
      qualities.append(inversion.reconstruction_quality(xb, result.x, yb, result.labels))
    # Clients that hold `batch` examples each and send one full-batch gradient.
    accuracy = _train_fedsgd(config, None, num_clients=num_train // batch, seed=config.seed)
    rows.append(_defense_row('batch', batch, qualities, accuracy))
  return {'model': config.model.to_dict(), 'attack': config.attack.to_dict(),
          'training': config.training.to_dict(), 'rows': rows}


def _defense_row(name, strength, qualities, accuracy):
  return {'defense': name, 'strength': float(strength),
          'mse': float(np.mean([q.mse for q in qualities])),
          'psnr': float(np.mean([q.psnr for q in qualities])),
          'label_accuracy': float(np.mean([q.label_accuracy for q in qualities])),
          'mse_per_example': [q.mse for q in qualities],
          'test_accuracy': accuracy}


# ----------------------------------------------------------------------------- DP-FedAvg


def _train_dp_fedavg(config, train, test, model, clients_per_round, noise_multiplier, seed) -> float:
  num_clients = train.num_clients
  q = clients_per_round / num_clients
  capacity = dp.poisson_capacity(num_clients, q)
  aggregator, _ = dp.dp_fedavg_components(config.dp.clip_norm, noise_multiplier, clients_per_round)
  server = optax.sgd(config.server_lr, momentum=config.server_momentum or None)
  algorithm = fedavg(model, optax.sgd(config.client_lr), server, config.local_epochs, config.batch_size,
                     train.max_examples, aggregator=aggregator)

  def one_round(state, key):
    cohort_key, step_key = jax.random.split(key)
    ids, participation = dp.poisson_cohort(cohort_key, num_clients, q, capacity)
    inputs = RoundInputs(gather_clients(train, ids), ids, participation, jnp.zeros((capacity,), bool))
    state, metrics = algorithm.step(state, inputs, step_key)
    return state, metrics['participants']

  @jax.jit
  def run(params):
    keys = jax.random.split(jax.random.key(seed + 1), config.rounds)
    state, participants = jax.lax.scan(one_round, algorithm.init(params), keys)
    return state.params, participants

  params, participants = run(model.init(jax.random.key(seed)))
  metrics = models_lib.evaluate(model, params, *test)
  return float(metrics['accuracy']), float(np.mean(np.asarray(participants)))


def dp_study(config) -> dict:
  """Accuracy vs epsilon of DP-FedAvg for several expected cohort sizes (Poisson sampling)."""
  data_kwargs = dict(config.data)
  ds = datasets.load_dataset(data_kwargs.pop('name'), **data_kwargs)
  train = to_device(ds.train)
  test = (jnp.asarray(ds.test_x), jnp.asarray(ds.test_y))
  model = _model(config.model, ds.input_shape)
  n = train.num_clients
  section = config.dp
  rows = []
  for m in config.clients_per_round:
    plan = [(None, 0.0)] if config.clipped_baseline else []  # clipped, noiseless: what clipping costs
    for target in config.target_epsilons:
      sigma = accounting.calibrate_noise_multiplier(target, n, m, config.rounds, section.delta, section.sampling,
                                                    section.accountant)
      plan.append((target, sigma))
    for target, sigma in plan:
      tic = time.time()
      accuracy, mean_cohort = _train_dp_fedavg(config, train, test, model, m, sigma, config.seed)
      epsilon = (accounting.compute_epsilon(sigma, n, m, config.rounds, section.delta, section.sampling,
                                            section.accountant) if sigma > 0 else float('inf'))
      epsilon_pld = (accounting.compute_epsilon(sigma, n, m, config.rounds, section.delta, section.sampling, 'pld')
                     if sigma > 0 and section.sampling == 'poisson' else None)
      rows.append({'clients_per_round': m, 'target_epsilon': target, 'noise_multiplier': sigma,
                   'epsilon': epsilon, 'epsilon_pld': epsilon_pld, 'noise_std_on_mean': sigma * section.clip_norm / m,
                   'mean_cohort': mean_cohort, 'test_accuracy': accuracy})
      print('m=%d sigma=%.3f eps=%.3g acc=%.3f (%.1fs)' % (m, sigma, epsilon, accuracy, time.time() - tic),
            flush=True)
  return {'num_clients': n, 'rounds': config.rounds, 'dp': section.to_dict(), 'rows': rows}


# ----------------------------------------------------------------------------- main


def _json_ready(value):
  if isinstance(value, float) and not np.isfinite(value):
    return None if np.isnan(value) else ('inf' if value > 0 else '-inf')
  if isinstance(value, dict):
    return {k: _json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  return value


def run_study(study: str, outdir: str, config_arg: str = '') -> str:
  """Runs one study and writes `outdir/<study>.json`; returns the path."""
  if study not in STUDIES:
    raise ValueError(f'--study={study!r} must be one of {STUDIES} or "all".')
  if study == 'dp':
    from configs import dp_digits
    result = dp_study(dp_digits.get_config(config_arg))
  else:
    from configs import dlg_digits
    config = dlg_digits.get_config(config_arg)
    result = progress_study(config) if study == 'progress' else defense_study(config)
  result['machine'] = f'{jax.devices()[0].platform}, {os.cpu_count()} cores'
  os.makedirs(outdir, exist_ok=True)
  path = os.path.join(outdir, f'{study}.json')
  with open(path, 'w') as f:
    json.dump(_json_ready(result), f)
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--study', default='all', help=f'one of {STUDIES} or "all"')
  parser.add_argument('--outdir', default='runs/privacy')
  parser.add_argument('--config_arg', default='', help="'' (full) or 'small' (smoke)")
  args = parser.parse_args(argv)
  logging.getLogger('absl').setLevel(logging.ERROR)  # dp-accounting warns about fractional orders
  for study in (STUDIES if args.study == 'all' else (args.study,)):
    tic = time.time()
    path = run_study(study, args.outdir, args.config_arg)
    print(f'wrote {path} ({time.time() - tic:.0f}s)')


if __name__ == '__main__':
  main()
