r"""Cost of one gossip step and of one D-PSGD step vs the number of nodes, dense vs sparse.

  .venv/bin/python benchmarks/gossip_bench.py                      # ring + exponential, N up to 4096
  .venv/bin/python benchmarks/gossip_bench.py --nodes 64,1024 --out /tmp/gossip.json

Model: an MLP 40-32-10 (1,642 parameters, MNIST-1D shaped inputs); every node holds 16 random
examples and uses batches of 8. For each topology and N it times, with the mixing operands passed
as runtime arguments (so a 4096 x 4096 W is not baked into the program):

  mix    x <- W x on the node-stacked parameters (leaves [N, ...]),
  step   one D-PSGD step (per-node gradients under vmap + mix), as `dpsgd(order='consensus')` runs it,

and reports the median of repeated calls after one warm-up call. Prints a table, then JSON (also
written to --out). Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import topology as topo_lib
from fedjax_lab.algorithms import decentralized
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.models import models as models_lib


def _time(fn, *args, min_seconds: float = 0.5, max_reps: int = 50) -> float:
  jax.block_until_ready(fn(*args))  # compile + warm-up
  times = []
  start = time.perf_counter()
  while len(times) < max_reps and (time.perf_counter() - start < min_seconds or len(times) < 3):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - tic)
  return float(np.median(times))


def bench_one(name: str, num_nodes: int, impl: str, model, min_seconds: float) -> dict:
  topology = topo_lib.make_topology(name, num_nodes)
  gossip = topo_lib.make_gossip(topology, impl, dtype=jnp.float32)
  params = decentralized.replicate(model.init(jax.random.key(0)), num_nodes)
  params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(1), p.shape), params)
  rng = np.random.default_rng(0)
  data = FederatedData(jnp.asarray(rng.normal(size=(num_nodes, 16, 40)), jnp.float32),
                       jnp.asarray(rng.integers(0, 10, size=(num_nodes, 16)), jnp.int32),
                       jnp.full((num_nodes,), 16, jnp.int32))

  mix = jax.jit(lambda ops, x: gossip.apply(ops, x, 0))

  @jax.jit
  def step(ops, x, data, key):
    _, grads = decentralized.node_gradients(model, x, decentralized.node_batches(data, key, 8))
    mixed = gossip.apply(ops, x, 0)
    return jax.tree.map(lambda m, g: m - 0.1 * g, mixed, grads)

  mix_s = _time(mix, gossip.operands, params, min_seconds=min_seconds)
  step_s = _time(step, gossip.operands, params, data, jax.random.key(2), min_seconds=min_seconds)
  return {'topology': name, 'num_nodes': num_nodes, 'impl': impl, 'degree': int(topology.adjacency.sum(1).max()),
          'mix_ms': 1e3 * mix_s, 'step_ms': 1e3 * step_s}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--nodes', default='16,64,256,1024,4096')
  parser.add_argument('--topologies', default='ring,exponential')
  parser.add_argument('--impls', default='dense,sparse')
  parser.add_argument('--min_seconds', type=float, default=0.5, help='time spent per measurement')
  parser.add_argument('--out', default=None, help='JSON output path')
  args = parser.parse_args(argv)
  model = models_lib.mlp((40,), 10, hidden=(32,))
  rows = []
  print(f'{"topology":<12} {"N":>5} {"deg":>4} {"impl":<7} {"mix ms":>10} {"step ms":>10}')
  for name in args.topologies.split(','):
    for n in (int(v) for v in args.nodes.split(',')):
      for impl in args.impls.split(','):
        row = bench_one(name, n, impl, model, args.min_seconds)
        rows.append(row)
        print(f'{name:<12} {n:>5} {row["degree"]:>4} {impl:<7} {row["mix_ms"]:>10.3f} {row["step_ms"]:>10.3f}',
              flush=True)
  speedups = []
  for row in rows:
    if row['impl'] == 'sparse':
      dense = [r for r in rows if r['impl'] == 'dense' and r['topology'] == row['topology']
               and r['num_nodes'] == row['num_nodes']]
      if dense:
        speedups.append({'topology': row['topology'], 'num_nodes': row['num_nodes'],
                         'mix_speedup': dense[0]['mix_ms'] / row['mix_ms'],
                         'step_speedup': dense[0]['step_ms'] / row['step_ms']})
  print('\nsparse speed-up over dense (mix / full step):')
  for s in speedups:
    print(f'  {s["topology"]:<12} N={s["num_nodes"]:>5}: {s["mix_speedup"]:8.1f}x / {s["step_speedup"]:6.1f}x')
  result = {
      'machine': {'platform': platform.platform(), 'processor': platform.processor(), 'cpus': os.cpu_count(),
                  'backend': jax.default_backend(), 'devices': jax.device_count(), 'jax': jax.__version__},
      'model': 'mlp 40-32-10 (1642 params), 16 examples/node, batch 8',
      'rows': rows,
      'speedups': speedups,
  }
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text)
  return rows


if __name__ == '__main__':
  main()
