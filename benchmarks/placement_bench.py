r"""Seconds per FedAvg round for each client placement, against a Python loop over clients.

Workload (issues 2 and 8): MLP 784-200-200-10, clients x 64 examples (random data: speed does not
depend on the values), 1 local epoch, batch 16, example-weighted mean (streamed). For each cohort
size C and strategy the script compiles once, times `--repeats` rounds and reports

  s/round, clients/s, achieved GFLOP/s (6 x params FLOPs per example per step: forward + backward),
  share of the matmul ceiling measured in the same run (a float32 2048^2 matmul), XLA's temporary
  memory of the compiled round (`compiled.memory_analysis()`), linearity (s/round per client
  relative to the smallest cohort: 1.00 is perfectly linear) and the memory ratio to the smallest
  cohort (1.00 is memory flat in C), and how often the round was traced (1: no retracing) with
  device-to-host transfers disallowed while timing (no hidden host syncs per round).

The engine rows time and measure the round exactly as the runner compiles it
(`fedjax_lab.engine.scan_rounds` with one round per block): cohort sampling, the reads of the
clients' rows and the round in one jitted program over the device-resident population, so the
temp memory is that of the whole program. Streaming FedAvg takes lazy inputs there (each client's
rows are read by id inside the client loop; no [C, M, ...] cohort exists); `cohort MiB` is what a
gathered cohort would add, and the `gathered` strategy measures exactly that (scan with the cohort
gathered before the client loop, as the runner did before lazy cohorts).

Strategies: python_loop, vmap, scan, chunked (--chunk_size), budget (chunked with the largest chunk
whose round fits --memory_budget_mb, picked by `placement.pick_chunk_size`), dp (central DP-FedAvg,
streamed, placement scan), gathered (opt-in: scan with the gathered cohort). vmap and python_loop
are skipped above --max_vmap_cohort.

  python -m benchmarks.placement_bench                      # C = 100, 1000, 10000
  python -m benchmarks.placement_bench --cohorts=20,40 --num_clients=100 --repeats=1   # smoke
  python -m benchmarks.placement_bench --strategies=scan --cohorts=1000 --profile_dir=/tmp/prof
  python -m benchmarks.placement_bench --strategies=scan,gathered --cohorts=100,10000   # lazy vs gathered

The population defaults to the largest cohort (10,000 x 64 x 784 float32 is 2 GB). Nothing here is
asserted in the test suite; results go to WORKSPACE.md with the machine.
"""

from __future__ import annotations

import os
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import report
from benchmarks.report import matmul_ceiling_gflops
from fedjax_lab import aggregators
from fedjax_lab import engine
from fedjax_lab.algorithms import fedavg
from fedjax_lab.clients import local
from fedjax_lab.clients import placement
from fedjax_lab.data import FederatedData
from fedjax_lab.models import models

_COHORTS = flags.DEFINE_list('cohorts', ['100', '1000', '10000'], 'Clients per round to time.')
_STRATEGIES = flags.DEFINE_list('strategies', ['python_loop', 'vmap', 'scan', 'chunked', 'budget', 'dp'],
                                'What to time (also: gathered).')
_CHUNK = flags.DEFINE_integer('chunk_size', 10, 'Clients per chunk for "chunked".')
_BUDGET = flags.DEFINE_float('memory_budget_mb', 64.0, 'XLA temp memory budget of one round for "budget".')
_CLIENTS = flags.DEFINE_integer('num_clients', 0, 'Clients in the population (0: the largest cohort).')
_EXAMPLES = flags.DEFINE_integer('examples', 64, 'Examples per client.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Local batch size.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed rounds per setting (after one compile round).')
_MAX_VMAP = flags.DEFINE_integer('max_vmap_cohort', 1000, 'Skip vmap/python_loop above this cohort size.')
_PROFILE = flags.DEFINE_string('profile_dir', None, 'Write a jax profiler trace of one round per setting here.')
_JSON = flags.DEFINE_string('json', None, 'Write the rows as JSON here.')


def _data(num_clients: int, examples: int) -> FederatedData:
  key_x, key_y = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (num_clients, examples, 784), jnp.float32)
  y = jax.random.randint(key_y, (num_clients, examples), 0, 10)
  return FederatedData(x, y, jnp.full((num_clients,), examples, jnp.int32))


def _time(fn, repeats: int) -> float:
  jax.block_until_ready(fn(0))  # compile
  tic = time.perf_counter()
  # A device-to-host transfer inside the loop would be a hidden per-round host sync: refuse it.
  with jax.transfer_guard_device_to_host('disallow'):
    for r in range(1, repeats + 1):
      out = fn(r)
    jax.block_until_ready(out)
  return (time.perf_counter() - tic) / repeats


def _algorithm(model, data, strategy: str, chunk: int | None):
  if strategy == 'dp':  # central DP-FedAvg: clip each client, sum, noise once (streams)
    return fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, _BATCH.value, data.max_examples,
                  aggregator=aggregators.dp_mean(1.0, 1.0, expected_clients_per_round=100), placement='scan')
  if strategy == 'gathered':  # the same streamed round, but given the gathered [C, M, ...] cohort
    algorithm = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, _BATCH.value, data.max_examples, placement='scan')
    return algorithm._replace(lazy_inputs=False)
  return fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, _BATCH.value, data.max_examples,
                placement=strategy, chunk_size=chunk)


def _sampler(algorithm, cohort: int, data):
  """The runner's cohort sampler for this algorithm (lazy cohorts when the algorithm reads rows by id)."""
  return engine.cohort_sampler(data, cohort, gather=not algorithm.lazy_inputs)


def _round_temp_bytes(algorithm, cohort: int, state, data):
  """XLA temp bytes of the runner's whole compiled round (sampling and row reads included)."""
  sampler = _sampler(algorithm, cohort, data)
  compiled = engine.lower_rounds(algorithm, sampler, state, jax.random.key(0), 1).compile()
  analysis = compiled.memory_analysis()
  return None if analysis is None else analysis.temp_size_in_bytes


def bench_engine(model, data, cohort: int, strategy: str, chunk: int, repeats: int):
  """(s/round, temp bytes, traces, chunk used) of the runner's jitted round, sampling included."""
  params = model.init(jax.random.key(0))
  if strategy == 'budget':
    def measure(k):
      algorithm = _algorithm(model, data, 'chunked', k)
      return _round_temp_bytes(algorithm, cohort, algorithm.init(params), data)
    chunk = placement.pick_chunk_size(measure, int(_BUDGET.value * 2 ** 20), cohort).chunk_size
    strategy_used = 'chunked'
  else:
    strategy_used = strategy
  algorithm = _algorithm(model, data, strategy_used, chunk)
  memory = _round_temp_bytes(algorithm, cohort, algorithm.init(params), data)
  traces, inner_step = [], algorithm.step

  def step(state, inputs, key):
    traces.append(1)  # runs only while tracing: counts (re)compilations
    return inner_step(state, inputs, key)

  algorithm = algorithm._replace(step=step)
  sampler = _sampler(algorithm, cohort, data)
  base_key = jax.random.key(1)
  # One round per call of the engine's loop, donating its state as the runner does: thread it
  # through; each round's cohort comes from the engine's round keys, as in the runner.
  carry = {'state': algorithm.init(params)}

  def one_round(_):
    carry['state'], metrics = engine.scan_rounds(algorithm, sampler, carry['state'], base_key, 1, donate=True)
    return metrics

  seconds = _time(one_round, repeats)
  if _PROFILE.value:
    folder = os.path.join(_PROFILE.value, f'C{cohort}_{strategy}')
    with jax.profiler.trace(folder):
      jax.block_until_ready(one_round(0))
  return seconds, memory, len(traces), chunk if strategy_used == 'chunked' else None


def bench_python_loop(model, data, cohort: int, repeats: int):
  """The baseline users write by hand: a jitted client update called in a Python loop."""
  update = jax.jit(local.local_sgd(model, optax.sgd(0.05), 1, _BATCH.value, data.max_examples))
  params = model.init(jax.random.key(0))

  def one_round(r):
    ids = np.random.default_rng(r).choice(data.num_clients, cohort, replace=False)
    total = jax.tree.map(jnp.zeros_like, params)
    for i in ids:
      client = local.ClientData(data.x[i], data.y[i], data.num_examples[i])
      out = update(params, client, jax.random.key(int(i)))
      total = jax.tree.map(lambda t, d: t + d * client.num_examples, total, out.delta)
    return jax.tree.map(lambda p, t: p + t / (cohort * data.max_examples), params, total)

  return _time(one_round, repeats), None, None, None


def main(argv):
  del argv
  cohorts = [int(c) for c in _COHORTS.value]
  num_clients = _CLIENTS.value or max(cohorts)
  if num_clients < max(cohorts):
    raise ValueError(f'--num_clients={num_clients} is below the largest cohort {max(cohorts)}.')
  model = models.mlp((784,), 10, hidden=(200, 200))
  params = models.num_params(model.init(jax.random.key(0)))
  data = _data(num_clients, _EXAMPLES.value)
  ceiling = matmul_ceiling_gflops()
  steps = -(-_EXAMPLES.value // _BATCH.value)
  flops_per_client = 6 * params * steps * _BATCH.value
  client_bytes = _EXAMPLES.value * (784 * 4 + 4) + 4
  device = jax.devices()[0]
  machine = f'{device.platform}:{device.device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()})'
  rows = []
  for cohort in cohorts:
    for strategy in _STRATEGIES.value:
      if strategy in ('vmap', 'python_loop') and cohort > _MAX_VMAP.value:
        continue
      if strategy == 'python_loop':
        seconds, memory, traces, chunk = bench_python_loop(model, data, cohort, _REPEATS.value)
      else:
        seconds, memory, traces, chunk = bench_engine(model, data, cohort, strategy, _CHUNK.value, _REPEATS.value)
      gflops = flops_per_client * cohort / seconds / 1e9
      rows.append({'clients_per_round': cohort, 'strategy': strategy, 'chunk_size': chunk, 's_per_round': seconds,
                   'clients_per_s': cohort / seconds, 'gflops': gflops, 'ceiling_share': gflops / ceiling,
                   'temp_bytes': memory, 'cohort_bytes': cohort * client_bytes, 'traces': traces})
      print(f'C={cohort:6d} {strategy:12s} {seconds:8.4f} s/round  traces={traces}', flush=True)
  smallest = {}
  for r in rows:
    smallest.setdefault(r['strategy'], r)
    base = smallest[r['strategy']]
    r['linearity'] = (r['s_per_round'] / r['clients_per_round']) / (base['s_per_round'] / base['clients_per_round'])
    r['memory_ratio'] = (r['temp_bytes'] / base['temp_bytes']
                         if r['temp_bytes'] and base['temp_bytes'] else None)
  print(f'\nMachine: {machine}; jax {jax.__version__}; matmul ceiling {ceiling:.1f} GFLOP/s; '
        f'{params} params; {flops_per_client / 1e6:.1f} MFLOP per client; population {num_clients}')
  print('| C | strategy | chunk | s/round | clients/s | GFLOP/s | % of ceiling | temp MiB | cohort MiB | '
        'linearity | memory ratio | traces | vs loop |')
  print('|' + '---|' * 13)
  loop = {r['clients_per_round']: r['s_per_round'] for r in rows if r['strategy'] == 'python_loop'}
  for r in rows:
    mem = '-' if r['temp_bytes'] is None else f"{r['temp_bytes'] / 2**20:.1f}"
    ratio = '-' if r['memory_ratio'] is None else f"{r['memory_ratio']:.2f}"
    speedup = loop.get(r['clients_per_round'])
    speedup = f"{speedup / r['s_per_round']:.2f}x" if speedup else '-'
    print(f"| {r['clients_per_round']} | {r['strategy']} | {r['chunk_size'] or '-'} | {r['s_per_round']:.4f} | "
          f"{r['clients_per_s']:.0f} | {r['gflops']:.1f} | {100 * r['ceiling_share']:.0f} % | {mem} | "
          f"{r['cohort_bytes'] / 2**20:.1f} | {r['linearity']:.2f} | {ratio} | {r['traces'] or '-'} | {speedup} |")
  result = {'machine': machine, 'jax': jax.__version__, 'ceiling_gflops': ceiling, 'num_params': params,
            'num_clients': num_clients, 'rows': rows}
  report.emit_json(result, _JSON.value)


if __name__ == '__main__':
  app.run(main)
