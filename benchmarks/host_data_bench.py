r"""Seconds per FedAvg round with the training clients on the device vs in host memory.

Workload: the FEMNIST-sized synthetic stand-in (`femnist_synthetic`: 3,400 writers, ~220 28x28
examples each, padded to 440, 62 classes; ~4.7 GB of memory-mapped float32 in the cache folder,
generated on first use), FedAvg with the 2NN MLP (or `--model=cnn`), 1 local epoch. Modes, each
timed over `--rounds` rounds after a compile-and-warm-up round, exactly as the runner runs them:

  device_scan    all clients on the device, rounds as one jitted lax.scan with sampling inside
                 (the runner's data_placement='device' block);
  device_step    all clients on the device, one jitted round per call (same step as the host modes);
  host_prefetch  clients in the memmap; each cohort drawn, gathered with numpy and put on the
                 device by a background thread while the previous round computes (data_placement='host');
  host_sync      the same without prefetch (prefetch_depth=0): gather + transfer sit on the critical path.

Also printed: the seconds to load one cohort alone (draw + gather + device_put), so the overlap can
be read off. The issue's acceptance: host_prefetch / device_scan within 1.10.

  python -m benchmarks.host_data_bench                                  # full size (~4.7 GB cache)
  python -m benchmarks.host_data_bench --num_clients=200 --rounds=3    # quick check
  python -m benchmarks.host_data_bench --model=cnn --clients_per_round=20 --json=host.json

The memmap is read through the page cache: right after generation it is warm; for a cold-cache
number drop caches first. Nothing here is asserted in the test suite.
"""

from __future__ import annotations

import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import report
from fedjax_lab.algorithms import fedavg
from fedjax_lab.data import FederatedData, datasets, host
from fedjax_lab.models import models
from fedjax_lab import engine

_CLIENTS = flags.DEFINE_integer('num_clients', 3400, 'Writers in the stand-in (3400 = FEMNIST).')
_MEAN = flags.DEFINE_integer('mean_examples', 220, 'Mean examples per writer (clients are padded to 2x).')
_COHORT = flags.DEFINE_integer('clients_per_round', 10, 'Clients per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Timed rounds per mode (after one compile round).')
_MODEL = flags.DEFINE_enum('model', 'mlp', ['mlp', 'cnn'], 'mlp: 784-200-200-62; cnn: McMahan et al.')
_BATCH = flags.DEFINE_integer('batch_size', 20, 'Local batch size.')
_EPOCHS = flags.DEFINE_integer('local_epochs', 1, 'Local epochs.')
_PLACEMENT = flags.DEFINE_string('placement', 'auto', 'Client placement (fedjax_lab.clients.placement).')
_DEPTH = flags.DEFINE_integer('prefetch_depth', 1, 'Rounds prepared ahead in host_prefetch.')
_MODES = flags.DEFINE_list('modes', ['device_scan', 'device_step', 'host_prefetch', 'host_sync'], 'What to time.')
_CACHE = flags.DEFINE_string('cache_dir', None, 'Cache folder of the stand-in (default $FEDJAX_LAB_CACHE).')
_JSON = flags.DEFINE_string('json', None, 'Write the result as JSON here.')


def _algorithm(model, max_examples: int):
  return fedavg(model, optax.sgd(0.05), optax.sgd(1.0), _EPOCHS.value, _BATCH.value, max_examples,
                placement=_PLACEMENT.value)


def time_device(algorithm, params, device_data, base_key, rounds: int, scan: bool) -> float:
  """s/round with every client on the device: one scanned block of `rounds`, or one call per round."""
  sampler = engine.cohort_sampler(device_data, _COHORT.value, gather=not algorithm.lazy_inputs)
  state = algorithm.init(jax.tree.map(jnp.copy, params))  # the loop donates the state
  block = rounds if scan else 1
  state, metrics = engine.scan_rounds(algorithm, sampler, state, base_key, block, donate=True)  # compile
  jax.block_until_ready((state, metrics))
  tic = time.perf_counter()
  for _ in range(rounds // block):
    state, metrics = engine.scan_rounds(algorithm, sampler, state, base_key, block, donate=True)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - tic) / rounds


def time_host(algorithm, params, host_data, base_key, rounds: int, depth: int) -> float:
  """s/round with the clients in host memory, through the runner's prefetcher and round step."""
  load = host.make_cohort_loader(host_data, _COHORT.value, base_key)
  state = algorithm.init(jax.tree.map(jnp.copy, params))  # the step donates the state
  with host.Prefetcher(load, range(rounds + 1), depth=depth) as cohorts:
    state, metrics = engine.step_rounds(algorithm, cohorts, state, base_key, 1)  # compile
    tic = time.perf_counter()
    state, metrics = engine.step_rounds(algorithm, cohorts, state, base_key, rounds)
    jax.block_until_ready(state)
    return (time.perf_counter() - tic) / rounds


def time_load(host_data, base_key, repeats: int) -> float:
  """s to draw, gather and transfer one cohort (no training)."""
  load = host.make_cohort_loader(host_data, _COHORT.value, base_key)
  jax.block_until_ready(load(0))
  tic = time.perf_counter()
  for r in range(1, repeats + 1):
    jax.block_until_ready(load(r))
  return (time.perf_counter() - tic) / repeats


def main(argv):
  del argv
  tic = time.perf_counter()
  dataset = datasets.femnist_synthetic(num_clients=_CLIENTS.value, mean_examples=_MEAN.value, cache_dir=_CACHE.value)
  prepare_seconds = time.perf_counter() - tic
  train = dataset.train
  model = (models.mlp((28, 28), 62, hidden=(200, 200)) if _MODEL.value == 'mlp'
           else models.cnn((28, 28), 62))
  params = model.init(jax.random.key(0))
  algorithm = _algorithm(model, train.max_examples)
  base_key = jax.random.key(1)
  data_bytes = sum(a.nbytes for a in train)
  cohort_bytes = data_bytes * _COHORT.value // train.num_clients
  device = jax.devices()[0]
  machine = f'{device.platform}:{device.device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()})'
  print(f'Data: {train.num_clients} clients x {train.max_examples} x 28x28, {data_bytes / 2**30:.2f} GiB '
        f'(ready in {prepare_seconds:.1f} s); cohort {_COHORT.value} clients = {cohort_bytes / 2**20:.1f} MiB',
        flush=True)

  results: dict[str, float] = {}
  device_data = None
  for mode in _MODES.value:
    if mode.startswith('device'):
      if device_data is None:
        tic = time.perf_counter()
        device_data = jax.block_until_ready(FederatedData(*(jax.device_put(np.asarray(a)) for a in train)))
        print(f'Copied all clients to the device in {time.perf_counter() - tic:.1f} s', flush=True)
      results[mode] = time_device(algorithm, params, device_data, base_key, _ROUNDS.value, scan=mode == 'device_scan')
    elif mode == 'host_prefetch':
      results[mode] = time_host(algorithm, params, train, base_key, _ROUNDS.value, _DEPTH.value)
    elif mode == 'host_sync':
      results[mode] = time_host(algorithm, params, train, base_key, _ROUNDS.value, 0)
    else:
      raise app.UsageError(f'Unknown mode {mode!r}; choose from device_scan, device_step, host_prefetch, host_sync.')
    print(f'{mode:14s} {results[mode]:8.4f} s/round', flush=True)
  del device_data
  load_seconds = time_load(train, base_key, max(3, _ROUNDS.value))

  reference = results.get('device_scan') or results.get('device_step')
  print(f'\nMachine: {machine}; jax {jax.__version__}; model {_MODEL.value} '
        f'({models.num_params(params)} params); C={_COHORT.value}; {_ROUNDS.value} timed rounds; '
        f'one cohort load alone {load_seconds:.4f} s')
  print('| mode | s/round | vs device_scan |')
  print('|---|---|---|')
  for mode, seconds in results.items():
    ratio = f'{seconds / reference:.3f}' if reference else '-'
    print(f'| {mode} | {seconds:.4f} | {ratio} |')
  ratio = (results['host_prefetch'] / reference) if reference and 'host_prefetch' in results else None
  if ratio is not None:
    print(f'\nhost_prefetch / {"device_scan" if "device_scan" in results else "device_step"} = {ratio:.3f} '
          f'(issue acceptance: <= 1.10)')
  result = {'machine': machine, 'jax': jax.__version__, 'model': _MODEL.value, 'num_clients': train.num_clients,
            'max_examples': train.max_examples, 'clients_per_round': _COHORT.value, 'rounds': _ROUNDS.value,
            'data_gib': data_bytes / 2**30, 'cohort_mib': cohort_bytes / 2**20, 'load_seconds': load_seconds,
            's_per_round': results, 'host_prefetch_over_device': ratio}
  report.emit_json(result, _JSON.value)


if __name__ == '__main__':
  app.run(main)
