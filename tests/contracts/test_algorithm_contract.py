"""The Algorithm contract, run over every name in the runner's registry (`builders.ALGORITHMS`):
each builds from a tiny config, and one round through the engine's loop (with the sampler the
algorithm declares, `train.make_sampler`) keeps the state's structure, shapes and dtypes, advances
`state.round` by one, reports the shared metric names (`algorithms.base.METRICS`), declares valid
`inputs` / `evaluates`, and does not retrace on a second round.

A new algorithm is covered by being registered in fedjax_lab/runner/builders.py; only the family
decides which tiny config it starts from (server algorithms: digits FedAvg; decentralized: digits
D-PSGD on a ring, every node every round; simulated clusters: the sync/async least-squares smoke).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dpsgd_digits, fedavg_mnist1d, sync_async
from fedjax_lab import engine
from fedjax_lab.algorithms import base
from fedjax_lab.runner import builders, simulated, train

NUM_CLIENTS = 8
# Fields an algorithm needs beyond its family's tiny config (its own required arguments). A new
# algorithm that fails to build here names the missing field: add it.
REQUIRED_FIELDS = {'fedprox': {'prox_mu': 0.01}, 'local_sgd_gossip': {'local_steps': 2},
                   'stale_synchronous': {'staleness_bound': 1}, 'fedbuff': {'buffer_size': 2}}
# The FedAvg smoke config's client-side fields, which FedSGD (one full-batch gradient per client) has not.
FEDSGD_CLIENT_FIELDS = ('batch_size', 'client_lr', 'client_lr_decay', 'client_lr_decay_rate', 'client_optimizer',
                        'local_epochs', 'prox_mu')


def _config(name):
  if name in simulated.ALGORITHMS:  # least squares over a simulated cluster of workers
    config = sync_async.get_config('smoke')
    config.sweep = ()
    config.rounds = 2  # the schedule drawn at build time covers the test's two rounds
    config.algorithm.name = name
    for field, value in REQUIRED_FIELDS.get(name, {}).items():
      config.algorithm[field] = value
    return config
  if name in builders.DECENTRALIZED:
    config = dpsgd_digits.get_config('smoke')
    config.clients_per_round = NUM_CLIENTS
    if name != 'dpsgd':
      del config.algorithm.order  # only D-PSGD has orders
  else:
    config = fedavg_mnist1d.get_config('smoke')
    config.data.name = 'digits'
    config.data.partition = 'iid'
    config.clients_per_round = 4
    if name == 'fedsgd':
      for field in FEDSGD_CLIENT_FIELDS:
        del config.algorithm[field]
  config.data.num_clients = NUM_CLIENTS
  config.model.hidden = (8,)
  config.algorithm.name = name
  for field, value in REQUIRED_FIELDS.get(name, {}).items():
    config.algorithm[field] = value
  return config


def _spec(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


@pytest.mark.parametrize('name', builders.ALGORITHMS)
def test_one_step(name):
  config = _config(name)
  dataset = builders.build_dataset(config)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  algorithm = builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None)
  state = algorithm.init(model.init(jax.random.key(0)))
  data = jax.tree.map(jnp.asarray, dataset.train)
  assert algorithm.inputs in base.INPUTS and algorithm.evaluates in base.EVALUATES
  cohort = builders.cohort_size(config, dataset.train.num_clients)
  # The sampler of the algorithm as built (a simulated one's schedule is keyed by its step function).
  sampler = train.make_sampler(algorithm, data, config.clients_per_round, 0.0, None, 'fixed_size', cohort)
  traces = []
  inner_step = algorithm.step

  def step(state, inputs, key):
    traces.append(1)
    return inner_step(state, inputs, key)

  algorithm = algorithm._replace(step=step)
  new_state, metrics = engine.scan_rounds(algorithm, sampler, state, jax.random.key(1), 1)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert _spec(new_state) == _spec(state)
  assert int(new_state.round) == int(state.round) + 1
  assert set(base.METRICS) <= set(metrics), f'{name} misses {set(base.METRICS) - set(metrics)}'
  assert np.isfinite(float(metrics['train_loss'][0]))
  assert jax.tree.structure(new_state.params) == jax.tree.structure(state.params)

  again, _ = engine.scan_rounds(algorithm, sampler, new_state, jax.random.key(1), 1)
  assert int(again.round) == int(state.round) + 2
  assert len(traces) == 1
