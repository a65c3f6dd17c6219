"""Decentralized-training studies: topologies, scaling in N, a disconnected graph, tracking.

  topologies    pure gossip on 8 topologies of 64 nodes beside the spectral prediction rho^(2k),
                then D-PSGD on Non-IID Digits: loss and consensus error vs iterations.
  scaling       accuracy vs number of nodes (4 ... 128) for ring, exponential and complete graphs.
  disconnected  two components converge to two different models (2-D least squares trajectories;
                Digits with the two components holding different classes).
  tracking      D-PSGD vs gradient tracking vs exact diffusion: exact optimum on heterogeneous least
                squares (float64), and accuracy under Non-IID Digits.

  python -m experiments.decentralized --study=topologies --outdir=runs/decentralized [--small]

Each study reads configs/gossip_<study>.py and writes <outdir>/<study>.json, which the figure
scripts experiments/figures/gossip_*.py read (and run the study when the file is missing). Every
run is a few jitted `lax.scan`s of the algorithm's step (`fedjax_lab.engine.scan_rounds`), evaluated in between.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_lab import engine
from fedjax_lab import topology as topo_lib
from fedjax_lab.algorithms import decentralized as dec
from fedjax_lab.data import datasets as datasets_lib
from fedjax_lab.data.federated import FederatedData, pack_clients, unpack_clients
from fedjax_lab.models import models as models_lib

STUDIES = ('topologies', 'scaling', 'disconnected', 'tracking')


# ---------------------------------------------------------------------------------------------
# Data and models.


def heterogeneous_least_squares(local_optima: np.ndarray, examples_per_node: int, noise_std: float = 0.05,
                                seed: int = 0, dtype=np.float32):
  """Node i regresses y = <x, w_i> + noise with its own w_i (its local optimum); x ~ N(0, I).

  Args:
    local_optima: [N, d] the nodes' w_i.
    examples_per_node: m.
    noise_std: label noise.
    seed: seed.
    dtype: array dtype.

  Returns:
    (FederatedData x [N, m, d], y [N, m] on device, global least-squares optimum [d] float64).
  """
  rng = np.random.default_rng(seed)
  num_nodes, dim = local_optima.shape
  x = rng.normal(size=(num_nodes, examples_per_node, dim))
  y = np.einsum('nmd,nd->nm', x, local_optima) + noise_std * rng.normal(size=(num_nodes, examples_per_node))
  optimum = np.linalg.lstsq(x.reshape(-1, dim), y.ravel(), rcond=None)[0]
  data = FederatedData(jnp.asarray(x.astype(dtype)), jnp.asarray(y.astype(dtype)),
                       jnp.full((num_nodes,), examples_per_node, jnp.int32))
  return data, optimum


def _model(config, dataset) -> models_lib.Model:
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
  if 'hidden' in kwargs:
    kwargs['hidden'] = tuple(kwargs['hidden'])
  return models_lib.get_model(config.model.name, dataset.input_shape, dataset.num_classes, **kwargs)


def _dataset(config, num_nodes: int, **data_overrides):
  kwargs = {k: v for k, v in config.data.to_dict().items() if k != 'name'}
  kwargs.update(data_overrides)
  if kwargs.get('partition') == 'dirichlet':
    kwargs.setdefault('min_size', 2)
  return datasets_lib.load_dataset(config.data.name, num_clients=num_nodes, **kwargs)


def _device(data: FederatedData) -> FederatedData:
  return FederatedData(*(jnp.asarray(a) for a in data))


def _topology(config, name: str, num_nodes: int) -> topo_lib.Topology:
  kwargs = dict((config.get('topology_kwargs') or {}).get(name, {}))
  weights = None if name in topo_lib.SCHEDULES else config.get('weights', 'metropolis_hastings')
  return topo_lib.make_topology(name, num_nodes, weights=weights, seed=config.seed, **kwargs)


# ---------------------------------------------------------------------------------------------
# Training loops.


def make_evaluator(model, train: FederatedData, test_x, test_y):
  """jitted params [N, ...] -> test accuracy of the node average, mean/min node accuracy, global loss."""
  test_x, test_y = jnp.asarray(test_x), jnp.asarray(test_y)

  @jax.jit
  def evaluate(params):
    average = topo_lib.node_average(params)
    result = {f'test_{k}': v for k, v in models_lib.evaluate(model, average, test_x, test_y).items()}
    if 'accuracy' in model.metrics:
      nodes = dec.evaluate_nodes(model, params, test_x, test_y)['accuracy']
      result['node_test_accuracy'] = jnp.mean(nodes)
      result['node_test_accuracy_min'] = jnp.min(nodes)
    result['global_train_loss'] = dec.global_loss(model, average, train)
    result['consensus_error'] = topo_lib.consensus_error(params)
    return result

  return evaluate


def train_with_evaluation(algorithm, evaluate, state, train: FederatedData, steps: int, eval_every: int,
                          seed: int) -> dict[str, list]:
  """Runs `steps` steps in blocks of `eval_every` (one jitted scan each), evaluating between blocks.

  Returns:
    {'step': [...], <evaluation metric>: [...] (at steps 0, eval_every, ...),
     'train_loss', 'consensus_error_every_step': per-step lists}.
  """
  rng = jax.random.key(seed)
  curves: dict[str, list] = {'step': [0]}
  for key, value in evaluate(state.params).items():
    curves[key] = [float(value)]
  per_step: dict[str, list] = {'train_loss': [], 'consensus_error_every_step': []}
  done = 0
  while done < steps:
    block = min(eval_every, steps - done)
    state, metrics = engine.scan_rounds(algorithm, engine.every_client_sampler(train), state, rng, block)
    done += block
    per_step['train_loss'] += np.asarray(metrics['train_loss']).tolist()
    per_step['consensus_error_every_step'] += np.asarray(metrics['consensus_error']).tolist()
    curves['step'].append(done)
    for key, value in evaluate(state.params).items():
      curves[key].append(float(value))
  return {**curves, **per_step}


def trajectory(algorithm, state, data: FederatedData, steps: int, seed: int):
  """Every step's node parameters: (params leaves [steps + 1, N, ...], consensus error [steps])."""

  @jax.jit
  def run(state):
    rng = jax.random.key(seed)

    def body(state, _):
      state, metrics = algorithm.step(state, engine.every_client_inputs(data), jax.random.fold_in(rng, state.round))
      return state, (state.params, metrics['consensus_error'])

    return jax.lax.scan(body, state, None, length=steps)

  _, (params, errors) = run(state)
  params = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state.params, params)
  return params, errors


def _kernel(params) -> np.ndarray:
  return np.asarray(params['Dense_0']['kernel'], np.float64)[..., 0]


# ---------------------------------------------------------------------------------------------
# Studies.


def pure_gossip(topology: topo_lib.Topology, steps: int, dim: int, seed: int) -> dict[str, Any]:
  """Consensus error of gossip alone from random values [N, dim], with the measured and predicted rate."""
  gossip = topo_lib.make_gossip(topology)
  x0 = jnp.asarray(np.random.default_rng(seed).normal(size=(topology.num_nodes, dim)), jnp.float32)

  @jax.jit
  def run(x):
    def body(x, k):
      x = gossip.mix(x, k)
      return x, topo_lib.consensus_error(x)

    return jax.lax.scan(body, x, jnp.arange(steps))[1]

  errors = np.concatenate([[float(topo_lib.consensus_error(x0))], np.asarray(run(x0), np.float64)])
  relative = errors / errors[0]
  # Measured per-step rate of ||X - mean||: slope of log error over the second half of the range where
  # the error is above float32 round-off (fast modes have died out there).
  valid = np.flatnonzero(relative > 1e-9)
  last = int(valid.max()) if valid.size else 0
  if last >= 2:
    first = last // 2
    measured = float((relative[last] / relative[first]) ** (1.0 / (2 * (last - first))))
  elif last == 1:
    measured = float(np.sqrt(relative[1]))
  else:
    measured = 0.0
  return {'name': topology.name, 'rho': topology.rho, 'spectral_gap': topology.spectral_gap,
          'period': topology.period, 'degree': int(topology.adjacency.sum(axis=1).max()),
          'consensus_error': errors.tolist(), 'measured_rate': measured}


def study_topologies(config: ml_collections.ConfigDict) -> dict:
  n = config.num_nodes
  dataset = _dataset(config, n)
  model = _model(config, dataset)
  train = _device(dataset.train)
  evaluate = make_evaluator(model, train, dataset.test_x, dataset.test_y)
  params0 = model.init(jax.random.key(config.seed))
  gossip_rows, training = [], {}
  for name in config.topologies:
    topology = _topology(config, name, n)
    row = pure_gossip(topology, config.gossip_steps, config.gossip_dim, config.seed)
    gossip_rows.append(row)
    algorithm = dec.dpsgd(model, topology, config.learning_rate, config.batch_size)
    tic = time.time()
    training[name] = train_with_evaluation(algorithm, evaluate, algorithm.init(params0), train, config.steps,
                                           config.eval_every, config.seed)
    print(f'{name:<22} rho={row["rho"]:.4f} measured={row["measured_rate"]:.4f} '
          f'final test acc={training[name]["test_accuracy"][-1]:.3f} '
          f'consensus={training[name]["consensus_error"][-1]:.2e} ({time.time() - tic:.1f} s)', flush=True)
  return {'config': config.to_dict(), 'gossip': gossip_rows, 'training': training}


def study_scaling(config: ml_collections.ConfigDict) -> dict:
  rows = []
  for seed in config.get('seeds', (config.seed,)):
    for n in config.num_nodes:
      dataset = _dataset(config, n, seed=seed)
      model = _model(config, dataset)
      train = _device(dataset.train)
      evaluate = make_evaluator(model, train, dataset.test_x, dataset.test_y)
      params0 = model.init(jax.random.key(seed))
      for name in config.topologies:
        topology = _topology(config, name, n)
        algorithm = dec.dpsgd(model, topology, config.learning_rate, config.batch_size)
        tic = time.time()
        state, metrics = engine.scan_rounds(algorithm, engine.every_client_sampler(train), algorithm.init(params0), jax.random.key(seed),
                                       config.steps)
        final = {k: float(v) for k, v in evaluate(state.params).items()}
        tail = max(1, config.steps // 10)
        row = {'seed': seed, 'num_nodes': n, 'topology': name, 'rho': topology.rho, **final,
               'train_loss_last10pct': float(np.mean(np.asarray(metrics['train_loss'])[-tail:])),
               'seconds': time.time() - tic}
        rows.append(row)
        print(f'seed {seed} N={n:<4} {name:<12} rho={topology.rho:.4f} avg-model acc={row["test_accuracy"]:.3f} '
              f'node acc={row["node_test_accuracy"]:.3f} consensus={row["consensus_error"]:.2e}', flush=True)
  return {'config': config.to_dict(), 'rows': rows}


def study_disconnected(config: ml_collections.ConfigDict) -> dict:
  n = config.num_nodes
  half = n // 2
  rng = np.random.default_rng(config.seed)
  centers = np.asarray(config.centers, np.float64)
  local_optima = np.concatenate([centers[0] + config.spread * rng.normal(size=(half, 2)),
                                 centers[1] + config.spread * rng.normal(size=(n - half, 2))])
  data, optimum = heterogeneous_least_squares(local_optima, config.examples_per_node, seed=config.seed)
  x, y = np.asarray(data.x, np.float64), np.asarray(data.y, np.float64)
  component_optima = [np.linalg.lstsq(x[s].reshape(-1, 2), y[s].ravel(), rcond=None)[0].tolist()
                      for s in (slice(0, half), slice(half, n))]
  model = models_lib.linear_regression((2,))
  params0 = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0)))
  least_squares = {'local_optima': local_optima.tolist(), 'global_optimum': optimum.tolist(),
                   'component_optima': component_optima, 'runs': {}}
  for name in ('disconnected', 'ring'):
    topology = topo_lib.make_topology(name, n)
    algorithm = dec.gradient_tracking(model, topology, config.ls_learning_rate, allow_disconnected=True)
    params, errors = trajectory(algorithm, algorithm.init(params0), data, config.ls_steps, config.seed)
    least_squares['runs'][name] = {'trajectory': _kernel(params).tolist(),
                                   'consensus_error': np.asarray(errors).tolist()}
    final = _kernel(params)[-1]
    print(f'least squares, {name:<12}: component averages {final[:half].mean(0).round(4).tolist()} '
          f'{final[half:].mean(0).round(4).tolist()}; global optimum {optimum.round(4).tolist()}', flush=True)

  # Digits: nodes [0, half) hold classes 0-4, nodes [half, n) classes 5-9 (IID within each half).
  dataset = datasets_lib.load_dataset(config.data.name, num_clients=1, partition='iid', seed=config.data.seed)
  all_x, all_y = unpack_clients(dataset.train)
  split_rng = np.random.default_rng(config.seed)
  indices = []
  for classes, nodes in ((range(0, 5), half), (range(5, 10), n - half)):
    members = split_rng.permutation(np.flatnonzero(np.isin(all_y, list(classes))))
    indices += np.array_split(members, nodes)
  train = _device(pack_clients(all_x, all_y, indices))
  model = _model(config, dataset)
  params0 = model.init(jax.random.key(config.seed))
  test_x, test_y = jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y)
  low = np.asarray(dataset.test_y) < 5

  @jax.jit
  def evaluate(params):
    correct = {}
    for label, nodes in (('A', slice(0, half)), ('B', slice(half, n))):
      average = topo_lib.node_average(jax.tree.map(lambda p: p[nodes], params))
      correct[label] = jnp.argmax(model.apply(average, test_x), -1) == test_y
    return correct, topo_lib.consensus_error(params)

  classification = {}
  for name in ('disconnected', 'ring'):
    topology = topo_lib.make_topology(name, n)
    algorithm = dec.dpsgd(model, topology, config.learning_rate, config.batch_size, allow_disconnected=True)
    state = algorithm.init(params0)
    curves = {'step': [], 'consensus_error': []}
    for label in ('A', 'B'):
      curves[f'{label}_acc_classes_0_4'], curves[f'{label}_acc_classes_5_9'] = [], []
    done = 0
    while True:
      correct, error = evaluate(state.params)
      curves['step'].append(done)
      curves['consensus_error'].append(float(error))
      for label in ('A', 'B'):
        hits = np.asarray(correct[label])
        curves[f'{label}_acc_classes_0_4'].append(float(hits[low].mean()))
        curves[f'{label}_acc_classes_5_9'].append(float(hits[~low].mean()))
      if done >= config.steps:
        break
      state, _ = engine.scan_rounds(algorithm, engine.every_client_sampler(train), state, jax.random.key(config.seed), config.eval_every)
      done += config.eval_every
    classification[name] = curves
    print(f'digits, {name:<12}: component A acc on 0-4 / 5-9 = {curves["A_acc_classes_0_4"][-1]:.3f} / '
          f'{curves["A_acc_classes_5_9"][-1]:.3f}; B = {curves["B_acc_classes_0_4"][-1]:.3f} / '
          f'{curves["B_acc_classes_5_9"][-1]:.3f}', flush=True)
  return {'config': config.to_dict(), 'least_squares': least_squares, 'classification': classification}


def study_tracking(config: ml_collections.ConfigDict) -> dict:
  n = config.num_nodes
  topology = topo_lib.make_topology(config.topology, n)
  rng = np.random.default_rng(config.seed)
  local_optima = rng.normal(size=config.ls_dim) + config.ls_heterogeneity * rng.normal(size=(n, config.ls_dim))
  least_squares = {}
  # float64 inside this block only: jax.enable_x64 is a context manager and restores the flag.
  with jax.enable_x64(True):
    data, optimum = heterogeneous_least_squares(local_optima, config.ls_examples_per_node, noise_std=0.1,
                                                seed=config.seed, dtype=np.float64)
    model = models_lib.linear_regression((config.ls_dim,))
    params0 = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float64), model.init(jax.random.key(0)))
    lr, small_lr = config.ls_learning_rates
    runs = {f'D-PSGD (a={lr})': dec.dpsgd(model, topology, lr),
            f'D-PSGD (a={small_lr})': dec.dpsgd(model, topology, small_lr),
            f'gradient tracking (a={lr})': dec.gradient_tracking(model, topology, lr),
            f'exact diffusion (a={lr})': dec.exact_diffusion(model, topology, lr)}
    for label, algorithm in runs.items():
      params, errors = trajectory(algorithm, algorithm.init(params0), data, config.ls_steps, config.seed)
      w = _kernel(params)
      distance = np.sum((w.mean(axis=1) - optimum) ** 2, axis=-1)
      worst_node = np.max(np.sum((w - optimum) ** 2, axis=-1), axis=-1)
      least_squares[label] = {'distance_sq': distance.tolist(), 'worst_node_distance_sq': worst_node.tolist(),
                              'consensus_error': np.asarray(errors).tolist()}
      print(f'least squares {label:<28}: ||mean x - x*||^2 = {distance[-1]:.3e}, worst node {worst_node[-1]:.3e}',
            flush=True)

  classification = {}
  for partition_name, partition in config.partitions.items():
    dataset = _dataset(config, n, **partition.to_dict())
    model = _model(config, dataset)
    train = _device(dataset.train)
    evaluate = make_evaluator(model, train, dataset.test_x, dataset.test_y)
    params0 = model.init(jax.random.key(config.seed))
    for label, builder in (('D-PSGD', dec.dpsgd), ('gradient tracking', dec.gradient_tracking),
                           ('exact diffusion', dec.exact_diffusion)):
      algorithm = builder(model, topology, config.learning_rate, config.batch_size)
      curves = train_with_evaluation(algorithm, evaluate, algorithm.init(params0), train, config.steps,
                                     config.eval_every, config.seed)
      classification[f'{partition_name}/{label}'] = curves
      print(f'{partition_name:<14} {label:<18}: node acc {curves["node_test_accuracy"][-1]:.3f}, '
            f'average-model acc {curves["test_accuracy"][-1]:.3f}, consensus {curves["consensus_error"][-1]:.2e}',
            flush=True)
  return {'config': config.to_dict(), 'optimum': optimum.tolist(), 'least_squares': least_squares,
          'classification': classification}


STUDY_FNS = {'topologies': study_topologies, 'scaling': study_scaling, 'disconnected': study_disconnected,
             'tracking': study_tracking}


def load_config(study: str, small: bool = False) -> ml_collections.ConfigDict:
  if study not in STUDIES:
    raise ValueError(f'Unknown study {study!r}; choose one of {STUDIES}.')
  module = importlib.import_module(f'configs.gossip_{study}')
  return module.get_config('small' if small else '')


def run_study(study: str, outdir: str, small: bool = False, config: ml_collections.ConfigDict | None = None) -> dict:
  """Runs one study and writes <outdir>/<study>.json; returns the results."""
  config = config or load_config(study, small)
  tic = time.time()
  results = STUDY_FNS[study](config)
  results['seconds'] = time.time() - tic
  results['machine'] = {'backend': jax.default_backend(), 'cpus': os.cpu_count(), 'jax': jax.__version__}
  os.makedirs(outdir, exist_ok=True)
  path = os.path.join(outdir, f'{study}.json')
  with open(path, 'w') as f:
    json.dump(results, f, default=float)
  print(f'wrote {path} ({results["seconds"]:.0f} s)')
  return results


def load_or_run(study: str, path: str, small: bool = False) -> dict:
  """The study's JSON at `path` (for the figure scripts); runs the study first when it is missing."""
  if not os.path.exists(path):
    print(f'{path} not found: running the {study!r} study first')
    run_study(study, os.path.dirname(path) or '.', small)
  with open(path) as f:
    return json.load(f)


def figure_arguments(parser: argparse.ArgumentParser, study: str) -> None:
  """--results, --outdir, --small: the flags every gossip_* figure script takes."""
  parser.add_argument('--results', default=f'runs/decentralized/{study}.json')
  parser.add_argument('--outdir', default='figures_out')
  parser.add_argument('--small', action='store_true', help="the configs' small variant, if results are missing")


def save_figure(fig, outdir: str, name: str) -> str:
  """Writes <outdir>/<name>.png and .pdf; returns the PNG path."""
  os.makedirs(outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(outdir, f'{name}.{ext}'), dpi=150)
  path = os.path.join(outdir, f'{name}.png')
  print('wrote', path)
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--study', choices=STUDIES + ('all',), required=True)
  parser.add_argument('--outdir', default='runs/decentralized')
  parser.add_argument('--small', action='store_true', help="the configs' 'small' variant (smoke test)")
  args = parser.parse_args(argv)
  for study in (STUDIES if args.study == 'all' else (args.study,)):
    run_study(study, args.outdir, args.small)


if __name__ == '__main__':
  main()
