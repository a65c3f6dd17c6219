r"""Seconds per FedAvg round for each client placement, against a Python loop over clients.

Workload (issue 2): MLP 784-200-200-10, 1000 clients x 64 examples (random data: speed does not
depend on the values), 1 local epoch, batch 16, example-weighted mean. For each cohort size C and
strategy the script compiles once, times `--repeats` rounds and reports

  s/round, clients/s, achieved GFLOP/s (6 x params FLOPs per example per step: forward + backward),
  share of the matmul ceiling measured in the same run (a float32 2048^2 matmul), and XLA's
  temporary memory for the compiled round (from `compiled.memory_analysis()`).

  python -m benchmarks.placement_bench                      # C = 100 and 1000
  python -m benchmarks.placement_bench --cohorts=100,1000,10000 --strategies=scan,chunked
  python -m benchmarks.placement_bench --json=bench.json

Nothing here is asserted in the test suite; results go to WORKSPACE.md with the machine.
"""

from __future__ import annotations

import json
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab.algorithms import fedavg
from fedjax_lab.clients import local
from fedjax_lab.data import FederatedData, sample_round
from fedjax_lab.models import models

_COHORTS = flags.DEFINE_list('cohorts', ['100', '1000'], 'Clients per round to time.')
_STRATEGIES = flags.DEFINE_list('strategies', ['python_loop', 'vmap', 'scan', 'chunked'], 'What to time.')
_CHUNK = flags.DEFINE_integer('chunk_size', 10, 'Clients per chunk for "chunked".')
_CLIENTS = flags.DEFINE_integer('num_clients', 1000, 'Clients in the population.')
_EXAMPLES = flags.DEFINE_integer('examples', 64, 'Examples per client.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Local batch size.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed rounds per setting (after one compile round).')
_MAX_VMAP = flags.DEFINE_integer('max_vmap_cohort', 1000, 'Skip vmap/python_loop above this cohort size.')
_JSON = flags.DEFINE_string('json', None, 'Write the rows as JSON here.')


def matmul_ceiling_gflops(size: int = 2048, repeats: int = 10) -> float:
  """Achieved float32 GFLOP/s of one large matmul: the machine's practical ceiling."""
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  tic = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * size ** 3 * repeats / (time.perf_counter() - tic) / 1e9


def _data(num_clients: int, examples: int) -> FederatedData:
  key_x, key_y = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (num_clients, examples, 784), jnp.float32)
  y = jax.random.randint(key_y, (num_clients, examples), 0, 10)
  return FederatedData(x, y, jnp.full((num_clients,), examples, jnp.int32))


def _time(fn, repeats: int) -> float:
  jax.block_until_ready(fn(0))  # compile
  tic = time.perf_counter()
  for r in range(1, repeats + 1):
    out = fn(r)
  jax.block_until_ready(out)
  return (time.perf_counter() - tic) / repeats


def bench_engine(model, data, cohort: int, strategy: str, chunk: int, repeats: int):
  algorithm = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, _BATCH.value, data.max_examples,
                     placement=strategy, chunk_size=chunk)
  state = algorithm.init(model.init(jax.random.key(0)))

  @jax.jit
  def round_fn(state, key):
    inputs = sample_round(data, key, cohort)
    return algorithm.step(state, inputs, key)

  memory = None
  try:
    analysis = round_fn.lower(state, jax.random.key(0)).compile().memory_analysis()
    memory = int(analysis.temp_size_in_bytes) if analysis is not None else None
  except Exception:  # memory analysis is not available on every backend
    pass
  seconds = _time(lambda r: round_fn(state, jax.random.key(r)), repeats)
  return seconds, memory


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

  return _time(one_round, repeats), None


def main(argv):
  del argv
  model = models.mlp((784,), 10, hidden=(200, 200))
  params = models.num_params(model.init(jax.random.key(0)))
  data = _data(_CLIENTS.value, _EXAMPLES.value)
  ceiling = matmul_ceiling_gflops()
  steps = -(-_EXAMPLES.value // _BATCH.value)
  flops_per_client = 6 * params * steps * _BATCH.value
  device = jax.devices()[0]
  machine = f'{device.platform}:{device.device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()})'
  rows = []
  for cohort in map(int, _COHORTS.value):
    for strategy in _STRATEGIES.value:
      if strategy in ('vmap', 'python_loop') and cohort > _MAX_VMAP.value:
        continue
      if strategy == 'python_loop':
        seconds, memory = bench_python_loop(model, data, cohort, _REPEATS.value)
      else:
        seconds, memory = bench_engine(model, data, cohort, strategy, _CHUNK.value, _REPEATS.value)
      gflops = flops_per_client * cohort / seconds / 1e9
      rows.append({'clients_per_round': cohort, 'strategy': strategy, 's_per_round': seconds,
                   'clients_per_s': cohort / seconds, 'gflops': gflops, 'ceiling_share': gflops / ceiling,
                   'temp_bytes': memory})
      print(f'C={cohort:6d} {strategy:12s} {seconds:8.4f} s/round', flush=True)
  print(f'\nMachine: {machine}; jax {jax.__version__}; matmul ceiling {ceiling:.1f} GFLOP/s; '
        f'{params} params; {flops_per_client / 1e6:.1f} MFLOP per client')
  header = f'| C | strategy | s/round | clients/s | GFLOP/s | % of ceiling | temp MiB | vs loop |'
  print(header)
  print('|' + '---|' * 8)
  loop = {r['clients_per_round']: r['s_per_round'] for r in rows if r['strategy'] == 'python_loop'}
  for r in rows:
    mem = '-' if r['temp_bytes'] is None else f"{r['temp_bytes'] / 2**20:.1f}"
    speedup = loop.get(r['clients_per_round'])
    speedup = f"{speedup / r['s_per_round']:.2f}x" if speedup else '-'
    print(f"| {r['clients_per_round']} | {r['strategy']} | {r['s_per_round']:.4f} | {r['clients_per_s']:.0f} | "
          f"{r['gflops']:.1f} | {100 * r['ceiling_share']:.0f} % | {mem} | {speedup} |")
  result = {'machine': machine, 'jax': jax.__version__, 'ceiling_gflops': ceiling, 'num_params': params,
            'rows': rows}
  print(json.dumps(result))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  app.run(main)
