"""FedSGD/FedAvg/FedProx/FedOpt/SCAFFOLD against closed forms and each other."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import aggregators
from fedjax_lab.algorithms import fedavg, fedsgd, scaffold
from fedjax_lab.algorithms.fedavg import can_stream
from fedjax_lab.clients import placement
from fedjax_lab.data import pack_clients, sample_round, to_device
from fedjax_lab.models import models


def _least_squares(num_clients=8, n=240, d=5, seed=0, equal=True):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype(np.float32)
  if equal:
    splits = np.array_split(np.arange(n), num_clients)
  else:
    cuts = np.sort(rng.choice(np.arange(1, n), num_clients - 1, replace=False))
    splits = np.split(np.arange(n), cuts)
  return x, y, to_device(pack_clients(x, y, splits))


def _kernel(state):
  return np.asarray(state.params['Dense_0']['kernel'])[:, 0]


def _train(algorithm, data, rounds, cohort, params, dropout=0.0):
  state = algorithm.init(params)
  step = jax.jit(algorithm.step)
  for r in range(rounds):
    key = jax.random.key(r)
    state, metrics = step(state, sample_round(data, jax.random.fold_in(key, 1), cohort, dropout), key)
  return state, metrics


def test_fedsgd_reaches_least_squares_solution():
  x, y, data = _least_squares(equal=False)
  model = models.linear_regression((5,))
  lipschitz = np.linalg.eigvalsh(x.T @ x / len(x)).max()
  algorithm = fedsgd(model, optax.sgd(1.0 / lipschitz), data.max_examples)
  state, _ = _train(algorithm, data, 300, 8, model.init(jax.random.key(0)))
  solution = np.linalg.lstsq(x, y, rcond=None)[0]
  assert np.linalg.norm(_kernel(state) - solution) / np.linalg.norm(solution) < 1e-4


def test_fedsgd_iterates_equal_full_data_gradient_descent():
  x, y, data = _least_squares(equal=False)
  model = models.linear_regression((5,))
  params = model.init(jax.random.key(0))
  algorithm = fedsgd(model, optax.sgd(0.3), data.max_examples)
  state = algorithm.init(params)
  w = _kernel(state).astype(np.float64)
  step = jax.jit(algorithm.step)
  for r in range(5):
    state, _ = step(state, sample_round(data, jax.random.key(r), 8), jax.random.key(r))
    w = w - 0.3 * x.T @ (x @ w - y) / len(x)  # single machine, all data
    np.testing.assert_allclose(_kernel(state), w, rtol=2e-5, atol=2e-6)


def test_fedavg_one_full_batch_epoch_equals_fedsgd():
  _, _, data = _least_squares(equal=True)
  model = models.linear_regression((5,))
  params = model.init(jax.random.key(0))
  a, _ = _train(fedsgd(model, optax.sgd(0.5), data.max_examples), data, 4, 8, params)
  b, _ = _train(fedavg(model, optax.sgd(0.5), optax.sgd(1.0), 1, -1, data.max_examples), data, 4, 8, params)
  np.testing.assert_allclose(_kernel(a), _kernel(b), rtol=1e-5, atol=1e-6)


def _classification_data(num_clients=12, seed=0):
  rng = np.random.default_rng(seed)
  sizes = rng.integers(3, 12, size=num_clients)
  x = rng.normal(size=(sizes.sum(), 6)).astype(np.float32)
  y = rng.integers(0, 3, size=sizes.sum()).astype(np.int32)
  return to_device(pack_clients(x, y, np.split(np.arange(sizes.sum()), np.cumsum(sizes)[:-1])))


def _flat(state):
  return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(state.params)])


@pytest.mark.parametrize('stacked', [False, True])
def test_same_result_across_placements_and_device_counts(stacked):
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  params = model.init(jax.random.key(0))
  # A non-streaming mean exercises the stacked path; the default mean streams.
  aggregator = (aggregators.Aggregator(lambda p: (), lambda u, s, c: (aggregators.weighted_mean(u, c.weights), s))
                if stacked else None)
  results = {}
  for devices, strategy in ((1, 'vmap'), (8, 'scan'), (8, 'chunked')):
    algorithm = fedavg(model, optax.sgd(0.1), optax.adam(0.01), 2, 4, data.max_examples, aggregator=aggregator,
                       placement=strategy, chunk_size=3, mesh=placement.client_mesh(devices))
    state, _ = _train(algorithm, data, 2, 10, params, dropout=0.3)
    results[(devices, strategy)] = _flat(state)
  reference = results[(1, 'vmap')]
  for key, value in results.items():
    np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5, err_msg=str(key))


def test_same_seed_same_numbers_and_no_retracing():
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  traces = []
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, data.max_examples)

  @jax.jit
  def step(state, inputs, key):
    traces.append(1)
    return algorithm.step(state, inputs, key)

  runs = []
  for _ in range(2):
    state = algorithm.init(model.init(jax.random.key(0)))
    for r in range(3):
      state, _ = step(state, sample_round(data, jax.random.key(r), 5, 0.2), jax.random.key(r))
    runs.append(_flat(state))
  np.testing.assert_array_equal(runs[0], runs[1])
  assert len(traces) == 1


def test_dropped_clients_do_not_count():
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, data.max_examples)
  state = algorithm.init(model.init(jax.random.key(0)))
  inputs = sample_round(data, jax.random.key(0), 6)
  half = inputs._replace(participation=jnp.arange(6) < 3)
  # Zeroing the data of dropped clients must not change the update: they carry no weight.
  emptied = half._replace(data=half.data._replace(num_examples=jnp.where(half.participation, half.data.num_examples, 0)))
  a, metrics = algorithm.step(state, half, jax.random.key(1))
  b, _ = algorithm.step(state, emptied, jax.random.key(1))
  np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-6, atol=1e-7)
  assert int(metrics['participants']) == 3
  assert float(metrics['bytes_up']) == 3 * float(metrics['bytes_down']) / 6


def test_scaffold_removes_client_drift_on_heterogeneous_least_squares():
  rng = np.random.default_rng(1)
  xs, ys = [], []
  for _ in range(10):
    x = rng.normal(size=(30, 5)) + 2 * rng.normal(size=5)
    xs.append(x)
    ys.append(x @ (2 * rng.normal(size=5)))
  x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)
  data = to_device(pack_clients(x, y, np.split(np.arange(300), 10)))
  solution = np.linalg.lstsq(x, y, rcond=None)[0]
  model = models.linear_regression((5,))
  params = model.init(jax.random.key(0))
  err = {}
  for name, algorithm in [('fedavg', fedavg(model, optax.sgd(0.01), optax.sgd(1.0), 5, 10, 30)),
                          ('scaffold', scaffold(model, 0.01, optax.sgd(1.0), 5, 10, 30, 10))]:
    state, _ = _train(algorithm, data, 300, 5, params)
    err[name] = np.linalg.norm(_kernel(state) - solution) / np.linalg.norm(solution)
  assert err['scaffold'] < 0.05 < err['fedavg']


def test_fedprox_and_fedopt_train():
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  params = model.init(jax.random.key(0))
  for server in (optax.sgd(1.0, momentum=0.9), optax.adam(0.01), optax.yogi(0.01), optax.adagrad(0.05)):
    algorithm = fedavg(model, optax.sgd(0.1), server, 2, 4, data.max_examples, prox_mu=0.1)
    state, metrics = _train(algorithm, data, 3, 6, params)
    assert np.isfinite(float(metrics['train_loss']))
    assert not np.allclose(_flat(state), np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)]))


def test_bytes_up_counts_what_a_compressor_sent():
  from fedjax_lab.transforms import compression
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  params = model.init(jax.random.key(0))
  num_params = models.num_params(params)
  plain = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, data.max_examples)
  quantized = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, data.max_examples,
                     transform=compression.quantize(bits=8))
  _, full = _train(plain, data, 1, 6, params)
  _, small = _train(quantized, data, 1, 6, params)
  assert float(full['bytes_up']) == 6 * 4 * num_params
  assert float(small['bytes_up']) == 6 * compression.quantize_bytes_per_client(num_params, 8)
  assert float(small['bytes_up']) < float(full['bytes_up']) / 3


# --------------------------------------------------------------------------- streaming (issue 8)

def _stacked(aggregator):
  """The same aggregator without its streaming form: fedavg then materialises the [C, ...] stack."""
  return aggregator._replace(streaming_form=None)


def _pipelines():
  from fedjax_lab import transforms
  from fedjax_lab.privacy import dp
  from fedjax_lab.transforms import compression
  return {
      'clipped_mean': (aggregators.mean(), transforms.clip_by_client_norm(0.05)),
      'central_dp': (aggregators.dp_mean(0.05, 1.0, expected_clients_per_round=10), None),
      'local_dp': dp.dp_fedavg_components(0.05, 0.5, 10, mode='local'),
      'quantized_norm_bounded': (aggregators.norm_bounded_mean(0.05), compression.quantize(4, rotate=True)),
  }


@pytest.mark.parametrize('name, devices', [('clipped_mean', 1), ('clipped_mean', 8), ('central_dp', 1),
                                           ('central_dp', 8), ('local_dp', 1), ('quantized_norm_bounded', 1)])
def test_streamed_pipeline_equals_stacked(name, devices):
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(4,))
  params = model.init(jax.random.key(0))
  aggregator, transform = _pipelines()[name]
  assert can_stream(aggregator, transform)
  assert not can_stream(_stacked(aggregator), transform)
  mesh = placement.client_mesh(devices)
  results = []
  for agg in (aggregator, _stacked(aggregator)):
    algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, data.max_examples, aggregator=agg,
                       transform=transform, placement='chunked', chunk_size=3, mesh=mesh)
    state, metrics = _train(algorithm, data, 1, 10, params, dropout=0.3)  # same round keys, so same noise
    results.append((_flat(state), metrics))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
  for key in ('train_loss', 'bytes_up', 'update_norm'):
    np.testing.assert_allclose(results[0][1][key], results[1][1][key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_what_streams_and_what_does_not():
  from fedjax_lab import transforms
  from fedjax_lab.transforms import compression
  clip = transforms.clip_by_client_norm(1.0)
  assert can_stream(aggregators.mean(), transforms.chain(clip, transforms.gaussian_noise(0.1)))
  assert can_stream(aggregators.mean(), compression.topk(2, 10, 5, error_feedback=False))
  assert not can_stream(aggregators.mean(), compression.topk(2, 10, 5, error_feedback=True))
  assert not can_stream(aggregators.mean(), transforms.nnm(1))
  for order_statistic in (aggregators.median(), aggregators.trimmed_mean(0.1, num_clients=10),
                          aggregators.krum(1, num_clients=10), aggregators.geometric_median()):
    assert not can_stream(order_statistic, None)


def _round_temp_bytes(algorithm, model, cohort, examples=8):
  from fedjax_lab.data import FederatedData
  from fedjax_lab.data.sampling import RoundInputs
  spec = jax.ShapeDtypeStruct
  inputs = RoundInputs(FederatedData(spec((cohort, examples, 6), jnp.float32), spec((cohort, examples), jnp.int32),
                                     spec((cohort,), jnp.int32)),
                       spec((cohort,), jnp.int32), spec((cohort,), bool), spec((cohort,), bool))
  state = jax.eval_shape(algorithm.init, model.init(jax.random.key(0)))
  return placement.compiled_temp_bytes(algorithm.step, state, inputs, jax.eval_shape(lambda: jax.random.key(0)))


@pytest.mark.parametrize('name', ['mean', 'central_dp'])
def test_streamed_scan_round_memory_is_flat_in_the_cohort(name):
  model = models.mlp((6,), 3, hidden=(64, 64))
  aggregator, transform = (aggregators.mean(), None) if name == 'mean' else _pipelines()['central_dp']
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, -1, 8, aggregator=aggregator, transform=transform,
                     placement='scan')
  small, large = _round_temp_bytes(algorithm, model, 50), _round_temp_bytes(algorithm, model, 500)
  assert large <= 1.2 * small, (small, large)
  # The stacked path holds every client's update: it grows with C.
  stacked = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, -1, 8, aggregator=_stacked(aggregator),
                   transform=transform, placement='scan')
  assert _round_temp_bytes(stacked, model, 500) > 5 * large


def _budget_config(**overrides):
  import ml_collections
  config = ml_collections.ConfigDict({
      'seed': 0, 'rounds': 1, 'clients_per_round': 12, 'placement': 'chunked', 'chunk_size': 0,
      'memory_budget_mb': 1.0, 'model': {'name': 'mlp', 'hidden': (8,)},
      'algorithm': {'name': 'fedavg', 'client_lr': 0.1, 'server_lr': 1.0, 'local_epochs': 1, 'batch_size': -1}})
  config.update(overrides)
  return config


def test_runner_config_picks_the_chunk_from_the_memory_budget():
  from fedjax_lab.runner import builders
  data = _classification_data()
  model = models.mlp((6,), 3, hidden=(8,))
  config = _budget_config()
  algorithm = fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, -1, data.max_examples, placement='chunked',
                     chunk_size=1)
  one = _round_temp_bytes(algorithm, model, 12, data.max_examples)
  config.memory_budget_mb = 3 * one / 2 ** 20
  make = lambda chunk: builders._build_algorithm(config, model, data, 3, None, chunk)
  choice = builders.choose_chunk_size(config, make, model, data, None)
  assert 1 < choice.chunk_size <= 12 and choice.temp_bytes <= config.memory_budget_mb * 2 ** 20
  assert builders.build_algorithm(config, model, data, 3, None).name == 'fedavg'  # picks the same chunk
  with pytest.raises(ValueError, match='memory_budget_mb.*chunk_size=1'):
    builders.build_algorithm(_budget_config(memory_budget_mb=one / 2 / 2 ** 20), model, data, 3, None)
  with pytest.raises(ValueError, match='config.memory_budget_mb'):
    builders.build_algorithm(_budget_config(placement='scan'), model, data, 3, None)
  with pytest.raises(ValueError, match='config.chunk_size'):
    builders.build_algorithm(_budget_config(memory_budget_mb=0), model, data, 3, None)


def _lazy_cases():
  from fedjax_lab.attacks import label_flip
  model = models.mlp((6,), 3, hidden=(8,))
  mesh = lambda: placement.client_mesh(8)
  return {
      'streamed_scan': (True, lambda: fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 11, placement='scan')),
      'streamed_chunked_8_devices': (True, lambda: fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 11,
                                                          placement='chunked', chunk_size=2, mesh=mesh())),
      'streamed_vmap': (True, lambda: fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 11, placement='vmap')),
      'stacked_median': (False, lambda: fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 11,
                                               aggregator=aggregators.median(), placement='scan')),
      'data_attack': (False, lambda: fedavg(model, optax.sgd(0.1), optax.sgd(1.0), 1, 4, 11,
                                            data_attack=label_flip(3), placement='scan')),
      'scaffold': (False, lambda: scaffold(model, 0.1, optax.sgd(1.0), 1, 4, 11, 12, placement='scan')),
  }


@pytest.mark.parametrize('case', list(_lazy_cases()))
def test_lazy_inputs_give_the_gathered_round(case):
  # Lazy inputs (population + ids) and gathered ones: the same round, whichever path the algorithm
  # takes (streamed: rows read by id in the client loop; otherwise one gather via materialize).
  data = _classification_data()
  assert data.max_examples == 11
  lazy_inputs, build = _lazy_cases()[case]
  algorithm = build()
  assert algorithm.lazy_inputs == lazy_inputs
  model = models.mlp((6,), 3, hidden=(8,))
  byzantine = jnp.arange(12) % 3 == 0
  step = jax.jit(algorithm.step)
  results = []
  for gather in (True, False):
    state = algorithm.init(model.init(jax.random.key(0)))
    for r in range(2):
      inputs = sample_round(data, jax.random.fold_in(jax.random.key(r), 1), 10, 0.3, byzantine, gather=gather)
      assert (inputs.data is None) == (not gather)
      state, metrics = step(state, inputs, jax.random.key(r))
    results.append((_flat(state), metrics))
  np.testing.assert_array_equal(results[0][0], results[1][0])
  jax.tree.map(np.testing.assert_array_equal, results[0][1], results[1][1])
