"""No config section is silently ignored: for every algorithm the runner builds and every optional
section, setting the section either changes the trained parameters or is refused, before anything is
compiled, with a ValueError that names the field.

The algorithms come from `builders.ALGORITHMS` (a new one is covered without editing this file);
each runs two rounds of a tiny digits config (a simulated cluster, fedjax_lab/runner/simulated.py: the
sync/async least-squares smoke, which refuses every section), and its run without the section is
shared by all sections (module-level cache).
"""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from configs import dpsgd_digits, fedavg_mnist1d, sync_async
from fedjax_lab.data import sampling
from fedjax_lab.runner import builders, simulated

NUM_CLIENTS = 12
ROUNDS = 2

# section -> (the field a refusal must name, the overrides that set it). Values are chosen so the
# section visibly moves two rounds of training when it is applied.
SECTIONS = {
    'aggregator': ('config.aggregator', {'aggregator.name': 'median'}),
    'update_attack': ('config.attack', {'attack.name': 'sign_flip', 'attack.fraction': 0.3}),
    'data_attack': ('config.attack', {'attack.name': 'label_flip', 'attack.fraction': 0.3}),
    'compression': ('config.compression', {'compression.name': 'quantize', 'compression.bits': 2}),
    'dp_central': ('config.dp', {'dp.name': 'central', 'dp.clip_norm': 0.05, 'dp.noise_multiplier': 1.0}),
    'dp_local': ('config.dp', {'dp.name': 'local', 'dp.clip_norm': 0.05, 'dp.noise_multiplier': 1.0}),
    'preaggregation': ('config.preaggregation', {'preaggregation.name': 'nnm', 'preaggregation.f': 1}),
    'deadline': ('config.deadline', {'deadline': 0.1, 'seconds_per_example': 1e-3}),
    'client_lr_decay': ('config.algorithm.client_lr_decay', {'algorithm.client_lr_decay': 'inverse',
                                                             'algorithm.client_lr_decay_rate': 1.0}),
    'prox_mu': ('config.algorithm.prox_mu', {'algorithm.prox_mu': 1.0}),
    'client_optimizer': ('config.algorithm.client_optimizer', {'algorithm.client_optimizer': 'adam'}),
    'client_momentum': ('config.algorithm.client_momentum', {'algorithm.client_momentum': 0.9}),
    'topology': ('config.topology', {'topology.name': 'ring'}),
}
# Sections a decentralized algorithm needs and applies by definition (its base config sets them).
DECENTRALIZED_OWN = ('topology',)
# What must be refused whatever else changes: a privacy claim SCAFFOLD cannot back, server pieces gossip lacks,
# and every federated section for a simulated cluster of workers (fedjax_lab/runner/simulated.py).
MUST_REFUSE = {('scaffold', 'dp_central'), ('scaffold', 'dp_local')} | {
    (name, section) for name in builders.DECENTRALIZED for section in SECTIONS if section not in DECENTRALIZED_OWN
} | {(name, section) for name in simulated.ALGORITHMS for section in SECTIONS}
# The FedAvg smoke config's client-side fields, which FedSGD has not (its config.algorithm rejects them).
FEDSGD_CLIENT_FIELDS = ('batch_size', 'client_lr', 'client_lr_decay', 'client_lr_decay_rate', 'client_optimizer',
                        'local_epochs', 'prox_mu')
# Fields a simulated algorithm needs beyond the least-squares smoke config.
SIMULATED_FIELDS = {'stale_synchronous': {'staleness_bound': 1}, 'fedbuff': {'buffer_size': 2}}


def _set(config, overrides):
  """Sets dotted fields, creating missing sections."""
  for key, value in overrides.items():
    *path, leaf = key.split('.')
    target = config
    for part in path:
      if part not in target or target[part] is None:
        target[part] = ml_collections.ConfigDict({'name': 'none'})
      target = target[part]
    target[leaf] = value
  return config


def _config(name, overrides=()):
  if name in simulated.ALGORITHMS:  # its own data (least squares over the workers) and model
    config = sync_async.get_config('smoke')
    config.sweep = ()
    config.rounds = ROUNDS
    config.algorithm.name = name
    config.algorithm.update(SIMULATED_FIELDS.get(name, {}))
    return _set(config, dict(overrides))
  if name in builders.DECENTRALIZED:
    config = dpsgd_digits.get_config('smoke')
    config.algorithm = ml_collections.ConfigDict({'name': name, 'learning_rate': 0.1, 'batch_size': 16})
    if name == 'local_sgd_gossip':
      config.algorithm.local_steps = 2
    config.data.partition = 'iid'
  else:
    config = fedavg_mnist1d.get_config('smoke')
    config.clients_per_round = 6
    config.dropout_rate = 0.0
    config.algorithm.name = name
    config.algorithm.client_lr = 0.1
    config.algorithm.batch_size = -1  # full-batch steps: the least to run
    config.algorithm.local_epochs = 2  # a second step, where FedProx's term and momentum act
    if name == 'fedprox':
      config.algorithm.prox_mu = 0.01  # FedProx needs mu > 0; the section raises it
    if name in ('fedadam', 'fedyogi', 'fedadagrad'):
      config.algorithm.server_lr = 0.01
    if name == 'fedsgd':  # one full-batch gradient per client: it has no client-side fields
      for field in FEDSGD_CLIENT_FIELDS:
        del config.algorithm[field]
  config.data.name = 'digits'
  config.data.num_clients = NUM_CLIENTS
  config.clients_per_round = NUM_CLIENTS if name in builders.DECENTRALIZED else config.clients_per_round
  config.model = ml_collections.ConfigDict({'name': 'logistic_regression'})
  config.placement = 'vmap'
  return _set(config, dict(overrides))


@functools.lru_cache(maxsize=None)
def _dataset(family='fedavg'):
  dataset = builders.build_dataset(_config(family))
  return dataset, jax.tree.map(jax.numpy.asarray, dataset.train)


def _build(config):
  """(model, algorithm), built as the runner builds them; raises the runner's ValueError."""
  name = config.algorithm.name
  dataset, _ = _dataset(simulated.ALGORITHMS[0] if name in simulated.ALGORITHMS else 'fedavg')
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  algorithm = builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None)
  builders.build_reporters(config, dataset.train.num_clients)
  return model, algorithm


@functools.lru_cache(maxsize=None)
def _initial_params():
  config = _config('fedavg')
  dataset, _ = _dataset()
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  return model.init(jax.random.split(jax.random.key(config.seed))[0])


def _final_params(config, algorithm) -> np.ndarray:
  """Two rounds as the runner samples them (same keys, Byzantine mask and cohort form).

  Op by op (`jax.disable_jit`): every run is a different program, and compiling each costs
  seconds, while the primitives they share compile once for the whole module.
  """
  _, train = _dataset()
  attack = config.get('attack') or {'name': 'none'}
  fraction = attack.get('fraction', 0.0) if attack.get('name', 'none') != 'none' else 0.0
  byzantine = jax.numpy.asarray(sampling.byzantine_mask(train.num_clients, fraction, seed=config.seed + 1))
  base_key = jax.random.split(jax.random.key(config.seed))[1]
  state = algorithm.init(_initial_params())
  with jax.disable_jit():
    for r in range(ROUNDS):
      sample_key, step_key = jax.random.split(jax.random.fold_in(base_key, r))
      inputs = sampling.sample_round(train, sample_key, config.clients_per_round, config.dropout_rate, byzantine,
                                     gather=not algorithm.lazy_inputs)
      state, _ = algorithm.step(state, inputs, step_key)
  return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(state.params)])


@functools.lru_cache(maxsize=None)
def _baseline(name):
  """The run without optional sections (it must build, so a refusal is the section's); None: not run."""
  config = _config(name)
  _, algorithm = _build(config)
  if name in builders.DECENTRALIZED or name in simulated.ALGORITHMS:  # every section is refused: nothing to compare
    return None
  return _final_params(config, algorithm)


@pytest.fixture(scope='module', autouse=True)
def _cheap_compiles():
  """Compiles this module's many small programs without XLA's optimizations (3x faster here).

  The caches are cleared afterwards, so no executable compiled this way serves another test.
  """
  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
  jax.clear_caches()


@pytest.mark.parametrize('section', list(SECTIONS))
@pytest.mark.parametrize('name', list(builders.ALGORITHMS))
def test_section_changes_the_result_or_is_refused(name, section):
  field, overrides = SECTIONS[section]
  if name in builders.DECENTRALIZED and section in DECENTRALIZED_OWN:
    pytest.skip('the decentralized base config needs this section (it is what the algorithm gossips over)')
  baseline = _baseline(name)
  config = _config(name, overrides)
  try:
    _, algorithm = _build(config)
  except ValueError as error:
    assert field in str(error), f'{name} refused {section} without naming {field}: {error}'
    if section.startswith('dp'):
      with pytest.raises(ValueError, match=field):  # no epsilon for a run that adds no noise
        builders.build_reporters(config, NUM_CLIENTS)
    return
  assert (name, section) not in MUST_REFUSE, f'{name} must refuse {section}'
  changed = _final_params(config, algorithm)
  assert np.all(np.isfinite(changed))
  assert not np.array_equal(changed, baseline), f'{section} was silently ignored by {name}'
