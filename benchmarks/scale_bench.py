r"""Seconds per FedAvg round on 1 core and on every core of this machine, against its matmul ceiling.

The number of CPU devices is fixed when JAX starts, so the script re-launches itself once per core
count: `taskset -c CORES python -m benchmarks.scale_bench --worker`, where the worker makes one CPU
device per usable core (`fedjax_lab.runtime.devices.use_all_cores`, as `experiments.run` does) and
spreads the cohort over them (`placement.client_mesh(0)`).

Workload (fedavg-2nn): MLP 784-200-200-10, clients x 64 examples (random values: speed does not depend
on them), 1 local epoch, batch 16, example-weighted mean, placement 'scan', cohorts read lazily by id
(the runner's default; --inputs=lazy,gathered adds the gathered cohort for comparison). Each round is
timed as the runner compiles it: `fedjax_lab.engine.lower_rounds` of --rounds rounds (sampling and row
reads included), compiled once, run --repeats times; the best run counts.

Printed per cohort size C and core count: s/round, achieved GFLOP/s (6 x params FLOPs per example:
forward + backward), its share of the all-core matmul ceiling (float32 2048^3, measured by the all-core
worker in the same run), speedup over 1 core and scaling efficiency (speedup / cores), XLA temp MiB.
Then the compute-bound main job (configs/fedavg_mnist1d.py, 100 clients x 5 local epochs per round,
60 rounds) run by `experiments.run` with every core and under `taskset -c 0` (run seconds from its
summary.json, compilation included). JSON goes to --json.

  python -m benchmarks.scale_bench                                   # C = 100, 1000, 10000; 1 and all cores
  python -m benchmarks.scale_bench --cohorts=100 --rounds=2 --repeats=1 --main_rounds=6   # smoke
  python -m benchmarks.scale_bench --core_counts=1,2,4,8 --cohorts=1000                  # scaling curve
  python -m benchmarks.scale_bench --inputs=lazy,gathered --cohorts=100,1000 --skip_main_job
  python -m benchmarks.scale_bench --devices=8 --core_counts=all --inputs=lazy,lazy_replicated,gathered  # 8-device mesh

Lazy cohorts read from a population split over the devices (`placement.shard_rows`, as the runner
places it: one copy in all, K / D clients per device); gathered ones from a replicated population, one
copy per device. K clients x 64 x 784 float32 is ~0.2 MB per client; settings that would need more
than --max_memory_fraction of the machine's memory are skipped and say so.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import report
from benchmarks.report import matmul_ceiling_gflops

_COHORTS = flags.DEFINE_list('cohorts', ['100', '1000', '10000'], 'Clients per round to time.')
_CORE_COUNTS = flags.DEFINE_list('core_counts', ['1', 'all'], "Core counts to run on ('all': every usable core).")
_INPUTS = flags.DEFINE_list('inputs', ['lazy'], "Cohort forms: 'lazy' (read by id from a population split over the "
                            "devices, the runner's), 'lazy_replicated' (read by id from a copy on every device, "
                            "config.data_placement='replicated') and/or 'gathered'.")
_DEVICES = flags.DEFINE_integer('devices', 0, 'CPU devices per worker (0: one per usable core, as the runner); more '
                                'than the cores simulates a bigger mesh on this machine.')
_CLIENTS = flags.DEFINE_integer('num_clients', 1000, 'Population size (raised to C when C is larger).')
_EXAMPLES = flags.DEFINE_integer('examples', 64, 'Examples per client.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Local batch size.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Rounds per compiled call (one lax.scan).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per setting (the best counts).')
_MAIN_ROUNDS = flags.DEFINE_integer('main_rounds', 60, 'Rounds of the compute-bound main job.')
_SKIP_MAIN = flags.DEFINE_bool('skip_main_job', False, 'Skip the fedavg_mnist1d main job.')
_MEMORY = flags.DEFINE_float('max_memory_fraction', 0.5, 'Skip settings whose replicated population exceeds this '
                             "share of the machine's memory.")
_JSON = flags.DEFINE_string('json', os.path.join('benchmarks', 'results', 'scale_cpu.json'), 'Write the result here.')
_WORKER = flags.DEFINE_bool('worker', False, 'Internal: time the rounds in this process (already pinned).')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDDEN = (200, 200)


def _clean_env() -> dict:
  """The environment without a forced CPU device count, so each process makes one device per core."""
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  env.setdefault('JAX_PLATFORMS', 'cpu')
  return env


def _taskset(cores: list[int]) -> list[str]:
  return ['taskset', '-c', ','.join(map(str, cores))]


def _machine_memory_bytes() -> int:
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


# ---------------------------------------------------------------------------------------------
# Worker: runs inside the pinned process.


def _worker() -> dict:
  from fedjax_lab.runtime import devices  # pylint: disable=g-import-not-at-top
  devices.use_all_cores(_DEVICES.value)  # before anything starts JAX
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from fedjax_lab import engine  # pylint: disable=g-import-not-at-top
  from fedjax_lab.algorithms.fedavg import fedavg  # pylint: disable=g-import-not-at-top
  from fedjax_lab.clients import placement  # pylint: disable=g-import-not-at-top
  from fedjax_lab.data import FederatedData, SplitFederatedData  # pylint: disable=g-import-not-at-top
  from fedjax_lab.models import models  # pylint: disable=g-import-not-at-top

  mesh = placement.client_mesh(_DEVICES.value)
  num_devices = placement.num_mesh_clients(mesh)
  replicated = NamedSharding(mesh, P()) if mesh is not None else jax.devices()[0]
  model = models.mlp((784,), 10, hidden=HIDDEN)
  params = model.init(jax.random.key(0))
  num_params = models.num_params(params)
  client_bytes = _EXAMPLES.value * (784 * 4 + 4) + 4
  result = {'cores': placement.usable_cores(), 'devices': num_devices, 'jax': jax.__version__,
            'ceiling_gflops': matmul_ceiling_gflops(), 'num_params': num_params, 'rows': []}
  flops_per_client = 6 * num_params * _EXAMPLES.value  # one local epoch: every example once
  for cohort in (int(c) for c in _COHORTS.value):
    num_clients = max(_CLIENTS.value, cohort)
    key_x, key_y = jax.random.split(jax.random.key(0))
    host = None
    for inputs in _INPUTS.value:
      if inputs not in ('lazy', 'lazy_replicated', 'gathered'):
        raise app.UsageError(f"--inputs={inputs!r}: use 'lazy', 'lazy_replicated' or 'gathered'.")
      # Lazy cohorts read rows by id from a population split over the devices (as the runner places
      # it: one copy in all); a gathered cohort is gathered from a replicated one (a copy per device).
      copies = 1 if inputs == 'lazy' else num_devices
      population_bytes = num_clients * client_bytes * copies
      if population_bytes > _MEMORY.value * _machine_memory_bytes():
        print(f'C={cohort} {inputs}: skipped, the population ({copies} copies) needs '
              f'{population_bytes / 2**30:.1f} GiB', file=sys.stderr, flush=True)
        result['rows'].append({'clients_per_round': cohort, 'inputs': inputs, 'skipped': True,
                               'population_bytes': population_bytes})
        continue
      if host is None:
        host = jax.device_get(FederatedData(
            jax.random.normal(key_x, (num_clients, _EXAMPLES.value, 784), jnp.float32),
            jax.random.randint(key_y, (num_clients, _EXAMPLES.value), 0, 10),
            jnp.full((num_clients,), _EXAMPLES.value, jnp.int32)))
      algorithm = fedavg(model, optax.sgd(0.05), optax.sgd(1.0), 1, _BATCH.value, _EXAMPLES.value,
                         placement='scan', mesh=mesh)
      if inputs == 'gathered':
        algorithm = algorithm._replace(lazy_inputs=False)
      data = (SplitFederatedData(*placement.shard_rows(host, mesh)) if inputs == 'lazy'
              else jax.device_put(host, replicated))
      sampler = engine.cohort_sampler(data, cohort, gather=not algorithm.lazy_inputs, num_clients=num_clients)
      state = jax.device_put(algorithm.init(params), replicated)
      base_key = jax.random.key(1)
      compiled = engine.lower_rounds(algorithm, sampler, state, base_key, _ROUNDS.value).compile()
      analysis = compiled.memory_analysis()
      jax.block_until_ready(compiled(state, sampler.data, base_key))  # warm-up
      best = float('inf')
      for _ in range(_REPEATS.value):
        tic = time.perf_counter()
        jax.block_until_ready(compiled(state, sampler.data, base_key))
        best = min(best, (time.perf_counter() - tic) / _ROUNDS.value)
      gflops = flops_per_client * cohort / best / 1e9
      per_device = max(shard.data.nbytes for shard in data.x.addressable_shards)
      result['rows'].append({'clients_per_round': cohort, 'inputs': inputs, 'num_clients': num_clients,
                             's_per_round': best, 'gflops': gflops,
                             'temp_bytes': None if analysis is None else analysis.temp_size_in_bytes,
                             'population_bytes_per_device': per_device})
      print(f'{result["cores"]} cores: C={cohort} {inputs} {best:.4f} s/round', file=sys.stderr, flush=True)
      del data, sampler
    del host
  return result


# ---------------------------------------------------------------------------------------------
# Parent: one pinned worker per core count, then the main job.


def _run_worker(cores: list[int]) -> dict:
  argv = [a for a in sys.argv[1:] if not a.startswith(('--json', '--worker'))]
  command = _taskset(cores) + [sys.executable, '-m', 'benchmarks.scale_bench', '--worker', *argv]
  out = subprocess.run(command, cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _main_job(cores: list[int] | None) -> dict:
  """The compute-bound main job through experiments.run (every core when `cores` is None)."""
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, '-m', 'experiments.run', '--config=configs/fedavg_mnist1d.py', f'--workdir={workdir}',
               '--config.clients_per_round=100', '--config.algorithm.local_epochs=5',
               f'--config.rounds={_MAIN_ROUNDS.value}', '--config.progress=False']
    if cores is not None:
      command = _taskset(cores) + command
    tic = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=_clean_env(), check=True, capture_output=True)
    wall = time.perf_counter() - tic
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  return {'cores': 'all' if cores is None else len(cores), 'num_devices': summary['num_devices'],
          'run_seconds': summary['seconds'], 'process_seconds': wall,
          'first_block_seconds_with_compile': summary.get('first_block_seconds_with_compile'),
          'test_accuracy': summary['final'].get('test_accuracy')}


def _table(workers: dict[int, dict]) -> list[dict]:
  all_cores = max(workers)
  ceiling = workers[all_cores]['ceiling_gflops']
  one = {(r['clients_per_round'], r['inputs']): r['s_per_round'] for r in workers[min(workers)]['rows']
         if not r.get('skipped')}
  rows = []
  for cores, result in sorted(workers.items()):
    for r in result['rows']:
      if r.get('skipped'):
        rows.append({'cores': cores, **r})
        continue
      base = one.get((r['clients_per_round'], r['inputs']))
      speedup = base / r['s_per_round'] if base and min(workers) == 1 else None
      rows.append({'cores': cores, 'devices': result['devices'], **r, 'ceiling_share': r['gflops'] / ceiling,
                   'speedup': speedup, 'efficiency': None if speedup is None else speedup / cores})
  return rows


def main(argv):
  del argv
  if _WORKER.value:
    print(json.dumps(_worker()))
    return
  available = sorted(os.sched_getaffinity(0))
  counts = sorted({len(available) if c == 'all' else int(c) for c in _CORE_COUNTS.value})
  if counts[-1] > len(available):
    raise app.UsageError(f'--core_counts asks for {counts[-1]} cores; this process may use {len(available)}.')
  workers = {n: _run_worker(available[:n]) for n in counts}
  rows = _table(workers)
  main_job = [] if _SKIP_MAIN.value else [_main_job(available[:1]), _main_job(None)]

  machine = f'{platform.processor() or platform.machine()}, {len(available)} usable cores'
  ceiling = workers[max(workers)]['ceiling_gflops']
  print(f'\nMachine: {machine}; jax {workers[max(workers)]["jax"]}; matmul ceiling {ceiling:.1f} GFLOP/s on '
        f'{max(workers)} cores ({workers[min(workers)]["ceiling_gflops"]:.1f} on {min(workers)}); fedavg-2nn, '
        f'{workers[max(workers)]["num_params"]} params, {_EXAMPLES.value} examples/client, batch {_BATCH.value}')
  print('| C | inputs | cores | devices | s/round | GFLOP/s | % of all-core ceiling | speedup | efficiency | temp MiB '
        '| population MiB/device |')
  print('|' + '---|' * 11)
  for r in rows:
    if r.get('skipped'):
      print(f"| {r['clients_per_round']} | - | {r['cores']} | - | skipped: population "
            f"{r['population_bytes'] / 2**30:.1f} GiB | | | | | | |")
      continue
    fmt = lambda v, spec: '-' if v is None else format(v, spec)
    temp = None if r['temp_bytes'] is None else r['temp_bytes'] / 2 ** 20
    print(f"| {r['clients_per_round']} | {r['inputs']} | {r['cores']} | {r['devices']} | {r['s_per_round']:.4f} | "
          f"{r['gflops']:.1f} | {100 * r['ceiling_share']:.0f} % | {fmt(r['speedup'], '.2f')} | "
          f"{fmt(r['efficiency'] and 100 * r['efficiency'], '.0f')} % | {fmt(temp, '.1f')} | "
          f"{r['population_bytes_per_device'] / 2 ** 20:.0f} |")
  if main_job:
    one, every = main_job
    print(f"\nMain job (fedavg_mnist1d, 100 clients x 5 epochs, {_MAIN_ROUNDS.value} rounds): taskset -c 0 "
          f"{one['run_seconds']:.1f} s, every core ({every['num_devices']} devices) {every['run_seconds']:.1f} s: "
          f"{every['run_seconds'] / one['run_seconds']:.2f}x the one-core time")
  result = {'machine': machine, 'workers': {str(k): v for k, v in workers.items()}, 'rows': rows,
            'main_job': main_job}
  if _JSON.value:
    os.makedirs(os.path.dirname(_JSON.value) or '.', exist_ok=True)
  report.emit_json(result, _JSON.value)


if __name__ == '__main__':
  app.run(main)
