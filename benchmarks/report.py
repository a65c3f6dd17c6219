"""What every benchmark shares: the matmul ceiling, and printing the result as one JSON line (and --json)."""

import json
import time


def emit_json(result: dict, path: str | None) -> None:
  print(json.dumps(result))
  if path:
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)


def matmul_ceiling_gflops(size: int = 2048, repeats: int = 10) -> float:
  """Achieved float32 GFLOP/s of one large matmul on the default device: the machine's practical ceiling.

  On CPU one device's matmul uses XLA's intra-op thread pool, i.e. every core the process may use.
  """
  import jax  # pylint: disable=g-import-not-at-top  (imported late: callers may size JAX's devices first)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  tic = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * size ** 3 * repeats / (time.perf_counter() - tic) / 1e9
