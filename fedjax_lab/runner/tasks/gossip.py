"""Decentralized analyses that need data or measurements the runner does not produce.

  gossip_spectrum       pure gossip (no gradients) per topology: consensus error vs iterations beside
                        the spectral prediction rho^(2k) (applies the mixing operator, no training).
  gossip_disconnected   two components converge to two models: 2-D least squares trajectories, and
                        Digits whose two halves of the nodes hold different classes.
  gossip_least_squares  D-PSGD (two step sizes) vs gradient tracking vs exact diffusion on heterogeneous
                        least squares in float64: distance of the node average to the optimum.
Training runs through `fedjax_lab.engine.scan_rounds` (with `evaluate` for per-round trajectories).
The classification curves of the topology and tracking studies are ordinary runs of the runner.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import engine
from fedjax_lab import topology as topo_lib
from fedjax_lab.algorithms import decentralized as dec
from fedjax_lab.data import datasets as datasets_lib
from fedjax_lab.data.federated import FederatedData, pack_clients, unpack_clients
from fedjax_lab.models import models as models_lib


def heterogeneous_least_squares(local_optima: np.ndarray, examples_per_node: int, noise_std: float = 0.05,
                                seed: int = 0, dtype=np.float32):
  """Node i regresses y = <x, w_i> + noise with its own w_i; x ~ N(0, I).

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


def _params_of(state):
  return state.params


def trajectory(algorithm, state, data: FederatedData, steps: int, seed: int):
  """Every step's node parameters through the engine: (params leaves [steps + 1, N, ...], consensus [steps])."""
  _, (metrics, params) = engine.scan_rounds(algorithm, engine.every_client_sampler(data), state,
                                            jax.random.key(seed), steps, evaluate=(1, _params_of))
  params = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state.params, params)
  return params, metrics['consensus_error']


def _kernel(params) -> np.ndarray:
  return np.asarray(params['Dense_0']['kernel'], np.float64)[..., 0]


def _topology(study, name: str, num_nodes: int, seed: int) -> topo_lib.Topology:
  kwargs = dict((study.get('topology_kwargs') or {}).get(name, {}))
  weights = None if name in topo_lib.SCHEDULES else study.get('weights', 'metropolis_hastings')
  return topo_lib.make_topology(name, num_nodes, weights=weights, seed=seed, **kwargs)


def pure_gossip(topology: topo_lib.Topology, steps: int, dim: int, seed: int) -> dict[str, Any]:
  """Consensus error of gossip alone from random values [N, dim], with the measured and predicted rate."""
  gossip = topo_lib.make_gossip(topology)
  x0 = jnp.asarray(np.random.default_rng(seed).normal(size=(topology.num_nodes, dim)), jnp.float32)

  @jax.jit
  def powers(x):  # x_k = W_k ... W_1 x_0: the mixing operator applied k times, no training
    def mix(x, k):
      x = gossip.mix(x, k)
      return x, topo_lib.consensus_error(x)
    return jax.lax.scan(mix, x, jnp.arange(steps))[1]

  errors = np.concatenate([[float(topo_lib.consensus_error(x0))], np.asarray(powers(x0), np.float64)])
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


def gossip_spectrum(config, workdir: str) -> dict:
  """config.study: num_nodes, topologies, topology_kwargs, weights, gossip_steps, gossip_dim."""
  del workdir
  study = config.study
  rows = [pure_gossip(_topology(study, name, study.num_nodes, config.seed), study.gossip_steps, study.gossip_dim,
                      config.seed) for name in study.topologies]
  return {'gossip': rows, 'headline': {row['name']: row['measured_rate'] for row in rows}}


def gossip_disconnected(config, workdir: str) -> dict:
  """config.study: num_nodes, centers, spread, examples_per_node, ls_learning_rate, ls_steps (least
  squares); config.data, config.model, learning_rate, batch_size, steps, eval_every (Digits)."""
  del workdir
  study = config.study
  n, seed = study.num_nodes, config.seed
  half = n // 2
  rng = np.random.default_rng(seed)
  centers = np.asarray(study.centers, np.float64)
  local_optima = np.concatenate([centers[0] + study.spread * rng.normal(size=(half, 2)),
                                 centers[1] + study.spread * rng.normal(size=(n - half, 2))])
  data, optimum = heterogeneous_least_squares(local_optima, study.examples_per_node, seed=seed)
  x, y = np.asarray(data.x, np.float64), np.asarray(data.y, np.float64)
  component_optima = [np.linalg.lstsq(x[s].reshape(-1, 2), y[s].ravel(), rcond=None)[0].tolist()
                      for s in (slice(0, half), slice(half, n))]
  model = models_lib.linear_regression((2,))
  params0 = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0)))
  least_squares = {'local_optima': local_optima.tolist(), 'global_optimum': optimum.tolist(),
                   'component_optima': component_optima, 'runs': {}}
  for name in ('disconnected', 'ring'):
    algorithm = dec.gradient_tracking(model, topo_lib.make_topology(name, n), study.ls_learning_rate,
                                      allow_disconnected=True)
    params, errors = trajectory(algorithm, algorithm.init(params0), data, study.ls_steps, seed)
    least_squares['runs'][name] = {'trajectory': _kernel(params).tolist(),
                                   'consensus_error': np.asarray(errors).tolist()}

  # Digits: nodes [0, half) hold classes 0-4, nodes [half, n) classes 5-9 (IID within each half).
  dataset = datasets_lib.load_dataset(config.data.name, num_clients=1, partition='iid', seed=config.data.seed)
  all_x, all_y = unpack_clients(dataset.train)
  split_rng = np.random.default_rng(seed)
  indices = []
  for classes, nodes in ((range(0, 5), half), (range(5, 10), n - half)):
    members = split_rng.permutation(np.flatnonzero(np.isin(all_y, list(classes))))
    indices += np.array_split(members, nodes)
  train = FederatedData(*(jnp.asarray(a) for a in pack_clients(all_x, all_y, indices)))
  model = models_lib.get_model(config.model.name, dataset.input_shape, dataset.num_classes,
                               hidden=tuple(config.model.hidden))
  params0 = model.init(jax.random.key(seed))
  test_x, test_y = jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y)
  low = np.asarray(dataset.test_y) < 5

  def correct(state):
    hits = {}
    for label, nodes in (('A', slice(0, half)), ('B', slice(half, n))):
      average = topo_lib.node_average(jax.tree.map(lambda p: p[nodes], state.params))
      hits[label] = jnp.argmax(model.apply(average, test_x), -1) == test_y
    return hits, topo_lib.consensus_error(state.params)

  classification = {}
  for name in ('disconnected', 'ring'):
    algorithm = dec.dpsgd(model, topo_lib.make_topology(name, n), study.learning_rate, study.batch_size,
                          allow_disconnected=True)
    state = algorithm.init(params0)
    _, (_, (hits, errors)) = engine.scan_rounds(algorithm, engine.every_client_sampler(train), state,
                                                jax.random.key(seed), study.steps, evaluate=(study.eval_every, correct))
    first_hits, first_error = jax.jit(correct)(state)
    curves = {'step': list(range(0, study.steps + 1, study.eval_every)),
              'consensus_error': [float(first_error)] + np.asarray(errors).tolist()}
    for label in ('A', 'B'):
      rows = np.concatenate([np.asarray(first_hits[label])[None], np.asarray(hits[label])])
      curves[f'{label}_acc_classes_0_4'] = rows[:, low].mean(axis=1).tolist()
      curves[f'{label}_acc_classes_5_9'] = rows[:, ~low].mean(axis=1).tolist()
    classification[name] = curves
  final = classification['disconnected']
  return {'least_squares': least_squares, 'classification': classification,
          'headline': {k: final[k][-1] for k in final if k.startswith(('A_', 'B_'))}}


def gossip_least_squares(config, workdir: str) -> dict:
  """config.study: num_nodes, topology, ls_dim, ls_examples_per_node, ls_heterogeneity,
  ls_learning_rates (D-PSGD at both; tracking and exact diffusion at the first), ls_steps."""
  del workdir
  study = config.study
  n = study.num_nodes
  topology = topo_lib.make_topology(study.topology, n)
  rng = np.random.default_rng(config.seed)
  local_optima = rng.normal(size=study.ls_dim) + study.ls_heterogeneity * rng.normal(size=(n, study.ls_dim))
  runs = {}
  with jax.enable_x64(True):  # float64 inside this block only
    data, optimum = heterogeneous_least_squares(local_optima, study.ls_examples_per_node, noise_std=0.1,
                                                seed=config.seed, dtype=np.float64)
    model = models_lib.linear_regression((study.ls_dim,))
    params0 = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float64), model.init(jax.random.key(0)))
    lr, small_lr = study.ls_learning_rates
    algorithms = {f'D-PSGD (a={lr})': dec.dpsgd(model, topology, lr),
                  f'D-PSGD (a={small_lr})': dec.dpsgd(model, topology, small_lr),
                  f'gradient tracking (a={lr})': dec.gradient_tracking(model, topology, lr),
                  f'exact diffusion (a={lr})': dec.exact_diffusion(model, topology, lr)}
    for label, algorithm in algorithms.items():
      params, errors = trajectory(algorithm, algorithm.init(params0), data, study.ls_steps, config.seed)
      w = _kernel(params)
      distance = np.sum((w.mean(axis=1) - optimum) ** 2, axis=-1)
      worst_node = np.max(np.sum((w - optimum) ** 2, axis=-1), axis=-1)
      runs[label] = {'distance_sq': distance.tolist(), 'worst_node_distance_sq': worst_node.tolist(),
                     'consensus_error': np.asarray(errors).tolist()}
  return {'optimum': optimum.tolist(), 'least_squares': runs,
          'headline': {label: run['distance_sq'][-1] for label, run in runs.items()}}

