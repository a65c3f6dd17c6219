"""Gradient-inversion analyses (DLG / iDLG) and the defences against them (`config.study` holds the
attack, progress, defenses and training sections; configs/dlg_digits.py).

  inversion_progress   reconstructions over the attack's steps for one-example FedSGD gradients, a small
                       batch, a FedAvg update and MNIST-1D.
  inversion_defenses   attack quality vs the strength of each defence (noise, clipping, top-k pruning,
                       quantization, batch size), beside the test accuracy of FedSGD trained with the same
                       defence on every client's gradient (through `fedjax_lab.engine.scan_rounds`).
"""

from __future__ import annotations

import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab import engine
from fedjax_lab.algorithms import fedsgd
from fedjax_lab.data import datasets
from fedjax_lab.data.federated import to_device
from fedjax_lab.models import models as models_lib
from fedjax_lab.privacy import defenses, inversion


def _model(section, input_shape, num_classes=10):
  return models_lib.get_model(section.name, tuple(input_shape), num_classes, hidden=tuple(section.hidden))


def _digits():
  from sklearn.datasets import load_digits
  bunch = load_digits()
  return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int32)


def _attack(config, simulate, observed, batch_size, input_shape, labels=None, seed=1,
            x_init_range=(0.0, 1.0), optimizer=None, snapshots=False):
  a = config.study.attack
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


def inversion_progress(config, workdir: str) -> dict:
  """DLG/iDLG on one-example FedSGD gradients, a small batch, a FedAvg update (and MNIST-1D)."""
  x, y = _digits()
  model = _model(config.model, (8, 8))
  params = model.init(jax.random.key(config.seed))
  onehot = lambda labels: jax.nn.one_hot(jnp.asarray(labels), 10)
  rows = []
  simulate = inversion.make_observation_fn(model, params, 'fedsgd')
  for i in config.study.progress.examples:
    observed = simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    label = inversion.idlg_label(inversion.last_dense_kernel(observed))
    result = _attack(config, simulate, observed, 1, (8, 8), labels=label[None], snapshots=True)
    rows.append(_scenario_row(f'iDLG, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
    result = _attack(config, simulate, observed, 1, (8, 8), snapshots=True)
    rows.append(_scenario_row(f'DLG, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
  i = config.study.progress.examples[0]
  if config.study.progress.adam:
    observed = simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    result = _attack(config, simulate, observed, 1, (8, 8), optimizer='adam', snapshots=True)
    rows.append(_scenario_row(f'DLG with Adam, FedSGD, 1 example (#{i})', x[i:i + 1], y[i:i + 1], result))
  b = config.study.progress.batch_size
  if b:
    start = max(config.study.progress.examples) + 1
    xb, yb = x[start:start + b], y[start:start + b]
    result = _attack(config, simulate, simulate(jnp.asarray(xb), onehot(yb)), b, (8, 8), snapshots=True)
    rows.append(_scenario_row(f'DLG, FedSGD, batch of {b}', xb, yb, result))
  steps, lr = config.study.progress.fedavg_local_steps, config.study.progress.fedavg_client_lr
  if steps:
    fedavg_simulate = inversion.make_observation_fn(model, params, 'fedavg', local_steps=steps, client_lr=lr)
    observed = fedavg_simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1]))
    label = inversion.idlg_label(-inversion.last_dense_kernel(observed))
    result = _attack(config, fedavg_simulate, observed, 1, (8, 8), labels=label[None], snapshots=True)
    rows.append(_scenario_row(f'iDLG, FedAvg update ({steps} local steps)', x[i:i + 1], y[i:i + 1], result))
  if config.study.progress.mnist1d:
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
  return {'model': config.model.to_dict(), 'attack': config.study.attack.to_dict(), 'rows': rows,
          'headline': {r['name']: r['mse'] for r in rows}}


# ----------------------------------------------------------------------------- defences


def _train_fedsgd(config, transform, num_clients=None, seed=0) -> float:
  """Test accuracy of FedSGD on digits with `transform` applied to every client's gradient."""
  t = config.study.training
  data_kwargs = dict(t.data)
  if num_clients is not None:
    data_kwargs['num_clients'] = num_clients
  name = data_kwargs.pop('name')
  ds = datasets.load_dataset(name, **data_kwargs)
  train = to_device(ds.train)
  model = _model(config.model, ds.input_shape)
  algorithm = fedsgd(model, optax.sgd(t.server_lr), train.max_examples, transform=transform)
  cohort = min(t.clients_per_round, train.num_clients)

  # Round r's keys are engine.round_keys(base, r); the old driver's were split(key(seed + 1), rounds)[r].
  sampler = engine.cohort_sampler(train, cohort)
  state, _ = engine.scan_rounds(algorithm, sampler, algorithm.init(model.init(jax.random.key(seed))),
                                jax.random.key(seed + 1), t.rounds)
  params = state.params
  metrics = models_lib.evaluate(model, params, jnp.asarray(ds.test_x), jnp.asarray(ds.test_y))
  return float(metrics['accuracy'])


def inversion_defenses(config, workdir: str) -> dict:
  """Attack quality and FedSGD accuracy vs the strength of each defence."""
  x, y = _digits()
  model = _model(config.model, (8, 8))
  params = model.init(jax.random.key(config.seed))
  num_params = models_lib.num_params(params)
  simulate = inversion.make_observation_fn(model, params, 'fedsgd')
  onehot = lambda labels: jax.nn.one_hot(jnp.asarray(labels), 10)
  n = config.study.defenses.examples_per_point
  rows = []
  for name in ('noise', 'clip', 'topk', 'quantize'):
    for strength in config.study.defenses[name]:
      tic = time.time()
      qualities = []
      for i in range(n):
        sent = defenses.defend(simulate(jnp.asarray(x[i:i + 1]), onehot(y[i:i + 1])), name, strength,
                               jax.random.key(1000 + i))
        result = _attack(config, simulate, sent, 1, (8, 8), seed=1 + i)
        qualities.append(inversion.reconstruction_quality(x[i:i + 1], result.x, y[i:i + 1], result.labels))
      accuracy = _train_fedsgd(config, defenses.defense_transform(name, strength, num_params), seed=config.seed)
      rows.append(_defense_row(name, strength, qualities, accuracy))
      logging.info('%s %s: mse %.4g, accuracy %.3f (%.1fs)', name, strength, rows[-1]['mse'], accuracy,
                   time.time() - tic)
  num_train = 1438
  for batch in config.study.defenses.batch:
    qualities = []
    for i in range(n):
      xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
      result = _attack(config, simulate, simulate(jnp.asarray(xb), onehot(yb)), batch, (8, 8), seed=1 + i)
      qualities.append(inversion.reconstruction_quality(xb, result.x, yb, result.labels))
    # Clients that hold `batch` examples each and send one full-batch gradient.
    accuracy = _train_fedsgd(config, None, num_clients=num_train // batch, seed=config.seed)
    rows.append(_defense_row('batch', batch, qualities, accuracy))
  return {'model': config.model.to_dict(), 'attack': config.study.attack.to_dict(),
          'training': config.study.training.to_dict(), 'rows': rows,
          'headline': {f"{r['defense']} {r['strength']:g}": r['mse'] for r in rows}}


def _defense_row(name, strength, qualities, accuracy):
  return {'defense': name, 'strength': float(strength),
          'mse': float(np.mean([q.mse for q in qualities])),
          'psnr': float(np.mean([q.psnr for q in qualities])),
          'label_accuracy': float(np.mean([q.label_accuracy for q in qualities])),
          'mse_per_example': [q.mse for q in qualities],
          'test_accuracy': accuracy}
