"""The registries: every section field reaches its builder, unknown / missing / NaN fields are refused."""

import inspect
import math

import jax
import ml_collections
import numpy as np
import pytest

from configs import base, dp_fedavg_digits, dpsgd_digits, fedavg_mnist1d, femnist_synthetic_host
from fedjax_lab import aggregators, engine
from fedjax_lab.models import models as models_lib
from fedjax_lab.privacy import accounting
from fedjax_lab.runner import builders, registry
from fedjax_lab.transforms.base import make_context
from tests.runner.overrides import with_overrides
from tests.algorithms.test_decentralized import N, least_squares, zeros_like_model

RUNNER_CONFIGS = {'fedavg_mnist1d': fedavg_mnist1d, 'dp_fedavg_digits': dp_fedavg_digits,
                  'dpsgd_digits': dpsgd_digits, 'femnist_synthetic_host': femnist_synthetic_host}


def _config(**fields):
  return with_overrides(fedavg_mnist1d.get_config('smoke'), **fields)


def _aggregator(**section):
  return builders.build_aggregator(_config(**{f'aggregator.{k}': v for k, v in section.items()},
                                           clients_per_round=10), num_clients=20)


# ---------------------------------------------------------------------------------------------
# Every registered builder lists its fields.


@pytest.mark.parametrize('section', sorted(registry.registries()))
def test_every_registered_builder_has_an_explicit_signature(section):
  for name, builder in registry.registries()[section].items():
    registry.parameters(builder)  # raises TypeError on *args / **kwargs
    assert 'name' not in registry.valid_fields(builder), (section, name)


def test_aggregator_builders_take_the_cohort_as_clients_per_round():
  # The aggregators call the cohort num_clients internally; the registry calls it clients_per_round.
  for name, builder in aggregators.AGGREGATORS.items():
    params = inspect.signature(builder).parameters
    assert 'clients_per_round' in params and 'num_clients' not in params, name
  krum = aggregators.AGGREGATORS['krum']
  with pytest.raises(ValueError, match='n > 2f'):
    krum(f=2, clients_per_round=6)
  krum(f=1, clients_per_round=6)


# ---------------------------------------------------------------------------------------------
# Every field is passed; unknown ones are refused with the valid list.


def test_every_field_reaches_the_builder(monkeypatch):
  seen = {}

  def fake_trimmed_mean(beta, weighted=False, clients_per_round=None):
    seen.update(beta=beta, weighted=weighted, clients_per_round=clients_per_round)
    return aggregators.mean()

  monkeypatch.setitem(registry.AGGREGATORS, 'trimmed_mean', fake_trimmed_mean)
  _aggregator(name='trimmed_mean', beta=0.2, weighted=True)
  assert seen == {'beta': 0.2, 'weighted': True, 'clients_per_round': 10}


@pytest.mark.parametrize('section, message', [
    ({'name': 'krum', 'f': 1, 'bogus': 3},
     r"config\.aggregator\.bogus is not a field of aggregator 'krum'; valid fields: name, f, byzantine_fraction\."),
    ({'name': 'trimmed_mean', 'trim': 0.2},
     r"config\.aggregator\.trim is not a field of aggregator 'trimmed_mean'; valid fields: name, beta, weighted"),
    ({'name': 'krum'}, r"config\.aggregator\.f is required by aggregator 'krum'"),
    ({'name': 'trimmed_mean'}, r'give exactly one of config\.aggregator\.beta=None .* and config\.aggregator\.f=None'),
    ({'name': 'krum', 'f': 1, 'clients_per_round': 5}, r'config\.aggregator\.clients_per_round is set by the runner'),
    ({'name': 'krum', 'f': 4}, r"config\.aggregator \(aggregator 'krum'\): krum: f=4"),
    ({'name': 'mean', 'f': 1}, r"config\.aggregator\.f is not a field of aggregator 'mean'; valid fields: name\."),
    ({'name': 'medain'}, r"Unknown config\.aggregator\.name='medain'; choose one of \[.*'median'"),
    ({'name': 'centered_clipping', 'tau': float('nan')}, r'config\.aggregator\.tau=nan must be a finite number'),
])
def test_bad_aggregator_sections(section, message):
  with pytest.raises(ValueError, match=message):
    _aggregator(**section)


def test_robust_aggregators_build_from_their_fields():
  assert _aggregator(name='krum', f=1) is not None
  assert _aggregator(name='krum', byzantine_fraction=0.2) is not None  # f = ceil(0.2 * 10) = 2
  assert _aggregator(name='trimmed_mean', beta=0.2) is not None
  assert _aggregator(name='median') is not None
  assert _aggregator(name='mean') is None  # the streaming default
  assert _aggregator(name='none') is None


@pytest.mark.parametrize('section, fields, message', [
    ('attack', {'name': 'sign_flip', 'scael': 2.0}, r"config\.attack\.scael is not a field of attack 'sign_flip'; "
                                                    r'valid fields: name, fraction, scale\.'),
    ('attack', {'name': 'model_replacement', 'clients_per_round': 3}, 'set by the runner'),
    ('attack', {'name': 'none', 'scale': 2.0}, r"config\.attack\.scale is set but config\.attack\.name='none'"),
    ('compression', {'name': 'quantize', 'bits': 4, 'k': 3}, r"config\.compression\.k is not a field of compressor "
                                                             r"'quantize'; valid fields: name, bits, rotate\."),
    ('compression', {'name': 'topk'}, r'config\.compression needs k'),
    ('compression', {'name': 'quantize', 'bits': 0}, r'config\.compression\.bits=0'),
    ('preaggregation', {'name': 'nnm'}, r'config\.preaggregation\.f is required'),
    ('preaggregation', {'name': 'nnm', 'f': 5}, r'nearest_neighbor_mixing: f=5 needs 2f < n'),
    ('dp', {'name': 'central', 'clip_norm': 1.0}, r'config\.dp needs noise_multiplier'),
    ('dp', {'name': 'central', 'noise_multiplier': 1.0}, r'config\.dp\.clip_norm is required'),
    ('dp', {'name': 'central', 'clip_norm': 1.0, 'noise_multiplier': 1.0, 'sampling': 'poisson'},
     r'config\.dp\.sampling'),
    ('dp', {'name': 'central', 'clip_norm': 1.0, 'noise_multiplier': 1.0, 'delta': 1.5}, 'delta'),
    ('dp', {'name': 'local', 'clip_norm': 1.0, 'noise_multiplier': 1.0, 'target_epsilon': 3.0},
     r'target_epsilon is only supported for name="central"'),
    ('dp', {'name': 'shuffle'}, r"Unknown config\.dp\.name='shuffle'"),
    ('dp', {'name': 'local', 'clip_norm': -1.0, 'noise_multiplier': 1.0}, 'clip_norm'),
    ('dp', {'name': 'local', 'clip_norm': 1.0, 'noise_multiplier': float('inf')},
     r'config\.dp\.noise_multiplier=inf must be a finite number'),
])
def test_bad_transform_sections(section, fields, message):
  config = _config(clients_per_round=10)
  config[section] = ml_collections.ConfigDict(fields)
  with pytest.raises(ValueError, match=message):
    builders.build_transform(config, num_params=100, num_clients=20)


def test_transform_sections_build():
  config = _config(clients_per_round=10)
  config.attack = ml_collections.ConfigDict({'name': 'sign_flip', 'fraction': 0.2, 'scale': 3.0})
  config.compression = ml_collections.ConfigDict({'name': 'topk', 'fraction': 0.1, 'error_feedback': True})
  config.preaggregation = ml_collections.ConfigDict({'name': 'nnm', 'f': 2})
  transform = builders.build_transform(config, num_params=100, num_clients=20)
  state = transform.init(None)
  assert jax.tree.leaves(state)[0].shape == (20, 100)  # top-k's error-feedback table: one row per client
  updates = {'w': np.ones((10, 100), np.float32)}
  out, _ = transform.update(updates, state, make_context(np.ones(10, np.float32), jax.random.key(0), None))
  assert out['w'].shape == (10, 100)
  config.attack = ml_collections.ConfigDict({'name': 'backdoor_boosted', 'fraction': 0.1, 'target_label': 3})
  assert builders.build_data_attack(config, num_classes=10) is not None


def test_dp_sections_build_the_aggregator_and_report():
  config = _config(clients_per_round=10, rounds=30)
  config.dp = ml_collections.ConfigDict({'name': 'central', 'clip_norm': 1.0, 'noise_multiplier': 1.2,
                                         'delta': 1e-5})
  assert builders.build_aggregator(config, num_clients=200).streaming  # clip, sum, noise once: streams
  [report] = builders.build_reporters(config, num_clients=200)
  assert report(30)['epsilon'] == pytest.approx(
      accounting.compute_epsilon(1.2, 200, 10, 30, 1e-5, sampling='fixed_size'), rel=1e-9)
  config.aggregator.name = 'median'
  with pytest.raises(ValueError, match='replaces the aggregator'):
    builders.build_aggregator(config, num_clients=200)
  config.aggregator.name = 'mean'
  config.dp = ml_collections.ConfigDict({'name': 'local', 'clip_norm': 1.0, 'noise_multiplier': 3.0,
                                         'target_epsilon': 0.0})
  assert builders.build_transform(config, num_params=100, num_clients=200) is not None
  assert builders.build_reporters(config, num_clients=200)[0](5)['noise_multiplier'] == 3.0


# ---------------------------------------------------------------------------------------------
# Algorithms and run-level fields.


def _algorithm(config):
  dataset = builders.build_dataset(config)
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  return builders.build_algorithm(config, model, dataset.train, dataset.num_classes, None)


def _digits(**fields):
  return _config(**{'data.name': 'digits', 'data.num_clients': 12, 'data.partition': 'iid',
                    'model.hidden': (8,), **fields})


@pytest.mark.parametrize('fields, message', [
    ({'algorithm.client_lr': float('nan')}, r'config\.algorithm\.client_lr=nan must be a finite number'),
    ({'algorithm.client_lr': float('inf')}, r'config\.algorithm\.client_lr=inf must be a finite number'),
    ({'algorithm.client_lr': 0.0}, r'config\.algorithm\.client_lr=0.0 must be > 0'),
    ({'algorithm.server_lr': float('nan')}, r'config\.algorithm\.server_lr=nan'),
    ({'algorithm.local_epochs': 0}, r'config\.algorithm\.local_epochs=0 must be >= 1'),
    ({'algorithm.client_lr_decay_rate': -1.0, 'algorithm.client_lr_decay': 'inverse'},
     r'config\.algorithm\.client_lr_decay_rate=-1.0 must be >= 0'),
    ({'algorithm.clinet_lr': 0.1}, r"config\.algorithm\.clinet_lr is not a field of algorithm 'fedavg'; valid "
                                   r'fields: name, client_lr, local_epochs, batch_size'),
    ({'algorithm.server_momentum': 0.9}, r"config\.algorithm\.server_momentum is not used by "
                                         r"server_optimizer='sgd'"),
    ({'algorithm.name': 'fedprox'}, r'config\.algorithm\.prox_mu=0.0 must be > 0 for FedProx'),
    ({'algorithm.name': 'fedsgd'}, r"config\.algorithm\.batch_size is not a field of algorithm 'fedsgd'; valid "
                                   r'fields: name, server_optimizer, server_lr'),
    ({'algorithm.name': 'scaffold', 'algorithm.client_optimizer': 'adam'},
     r"config\.algorithm\.client_optimizer='adam' is not supported by config\.algorithm\.name='scaffold'"),
    ({'topology.name': 'ring'}, r"config\.topology\.name='ring' is not supported by config\.algorithm\.name='fedavg': "
                                r'server algorithms do not gossip'),
    ({'data.alpha': float('nan')}, r'config\.data\.alpha=nan must be a finite number'),
    ({'model.widht': 3}, r"config\.model\.widht is not a field of model 'mlp'; valid fields: name, hidden\."),
])
def test_bad_algorithm_and_data_fields(fields, message):
  with pytest.raises(ValueError, match=message):
    _algorithm(_digits(**fields))


def test_fedopt_variants_and_server_optimizer_fields():
  for name in ('fedadam', 'fedyogi', 'fedavgm', 'fedadagrad'):
    assert _algorithm(_digits(**{'algorithm.name': name})).name == name
  adam = _digits(**{'algorithm.name': 'fedadam', 'algorithm.server_b1': 0.5, 'algorithm.server_eps': 1e-2})
  assert _algorithm(adam).name == 'fedadam'
  with pytest.raises(ValueError, match=r"config\.algorithm\.server_momentum is not used by server_optimizer='adam'"):
    _algorithm(_digits(**{'algorithm.name': 'fedadam', 'algorithm.server_momentum': 0.9}))


def test_scaffold_refuses_or_applies_sections():
  assert _algorithm(_digits(**{'algorithm.name': 'scaffold'})).name == 'scaffold'
  # SCAFFOLD applies the aggregator, attacks, compression and pre-aggregation ...
  config = _digits(**{'algorithm.name': 'scaffold', 'aggregator.name': 'median'})
  assert not _algorithm(config).lazy_inputs  # the median needs the whole cohort
  config = _digits(**{'algorithm.name': 'scaffold'})
  config.attack = ml_collections.ConfigDict({'name': 'sign_flip', 'fraction': 0.2, 'scale': 3.0})
  config.compression = ml_collections.ConfigDict({'name': 'quantize', 'bits': 4})
  config.preaggregation = ml_collections.ConfigDict({'name': 'nnm', 'f': 1})
  assert _algorithm(config).name == 'scaffold'
  # ... and refuses DP, whose guarantee its clear-text control variates would void.
  config = _digits(**{'algorithm.name': 'scaffold'})
  config.dp = ml_collections.ConfigDict({'name': 'central', 'clip_norm': 1.0, 'noise_multiplier': 1.0})
  with pytest.raises(ValueError, match=r"config\.dp\.name='central' is not supported by "
                                       r"config\.algorithm\.name='scaffold'"):
    _algorithm(config)


@pytest.mark.parametrize('fields, message', [
    ({'seed': -1}, r'config\.seed=-1 must be >= 0'),
    ({'rounds': 0}, r'config\.rounds=0 must be >= 1'),
    ({'dropout_rate': float('nan')}, r'config\.dropout_rate=nan must be a finite number'),
    ({'dropout_rate': 1.0}, r'config\.dropout_rate=1.0 must be in \[0, 1\)'),
    ({'speed_sigma': float('inf')}, r'config\.speed_sigma=inf must be a finite number'),
    ({'deadline': float('nan')}, r'config\.deadline=nan must be > 0'),
    ({'roudns': 3}, r'config\.roudns is not a field of a run; valid fields: .*rounds'),
])
def test_bad_run_fields(fields, message):
  with pytest.raises(ValueError, match=message):
    builders.validate_run_fields(_config(**fields))


def test_deadline_inf_is_allowed():
  builders.validate_run_fields(_config(deadline=math.inf))


@pytest.mark.parametrize('name', sorted(RUNNER_CONFIGS))
def test_runner_configs_start_from_the_base_config(name):
  for arg in ('', 'smoke'):
    config = RUNNER_CONFIGS[name].get_config(arg)
    assert set(base.get_base_config().keys()) <= set(config.keys())
    builders.validate_run_fields(config)


# ---------------------------------------------------------------------------------------------
# Decentralized: config.algorithm and config.topology from plain dicts.


def test_decentralized_builds_and_validates():
  model = models_lib.linear_regression((3,))
  algorithm = registry.build_decentralized({'name': 'gradient_tracking', 'learning_rate': 0.1, 'batch_size': 2},
                                           {'name': 'exponential', 'max_power': 1, 'gossip': 'sparse'}, model, N)
  assert algorithm.name == 'gradient_tracking'
  data, _ = least_squares()
  state, metrics = jax.jit(algorithm.step)(algorithm.init(zeros_like_model(model)), engine.every_client_inputs(data),
                                           jax.random.key(0))
  assert np.isfinite(float(metrics['train_loss']))
  local = registry.build_decentralized({'name': 'local_sgd_gossip', 'learning_rate': 0.1, 'batch_size': 2,
                                        'local_steps': 2}, {'name': 'ring'}, model, N)
  assert local.name == 'local2_gossip'
  cases = [
      ({'name': 'fedavg', 'learning_rate': 0.1}, {'name': 'ring'}, r"config\.algorithm\.name='fedavg'"),
      ({'name': 'dpsgd', 'learning_rate': 0.1}, {'name': 'ring', 'hops': 2},
       r"config\.topology\.hops is not a field of topology 'ring'; valid fields: name, gossip, allow_disconnected"),
      ({'name': 'dpsgd', 'learning_rate': 0.1}, {'name': 'erdos_renyi'},
       r'config\.topology\.edge_probability is required'),
      ({'name': 'dpsgd', 'learning_rate': 0.1}, {'name': 'disconnected'}, 'allow_disconnected=True'),
      ({'name': 'dpsgd', 'learning_rate': float('nan')}, {'name': 'ring'}, r'config\.algorithm\.learning_rate=nan'),
      ({'name': 'dpsgd'}, {'name': 'ring'}, r'config\.algorithm\.learning_rate is required'),
      ({'name': 'dpsgd', 'learning_rate': 0.1, 'gossip_impl': 'dense'}, {'name': 'ring'}, 'set by the runner'),
      ({'name': 'dpsgd', 'learning_rate': 0.1}, {'name': 'ring', 'num_nodes': 4}, r'num_nodes=4 must equal'),
  ]
  for algorithm_fields, topology_fields, message in cases:
    with pytest.raises(ValueError, match=message):
      registry.build_decentralized(algorithm_fields, topology_fields, model, N)
  with pytest.warns(RuntimeWarning, match='disconnected'):
    registry.build_decentralized({'name': 'dpsgd', 'learning_rate': 0.1},
                                 {'name': 'disconnected', 'allow_disconnected': True}, model, N)


def test_topology_fields_reach_the_graph():
  topology = registry.build_topology({'name': 'erdos_renyi', 'edge_probability': 1.0, 'seed': 3}, 6)
  assert topology.adjacency.sum() == 6 * 5  # p = 1: the complete graph
  lazy = registry.build_topology({'name': 'ring', 'lazy': True, 'weights': 'uniform'}, 6)
  assert lazy.name == 'lazy_ring'
