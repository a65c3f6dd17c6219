"""Measuring the compute time of a jitted function on this machine (for the speedup model)."""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def median_seconds(fn: Callable, *args, repeats: int = 20, warmup: int = 2) -> float:
  """Median wall-clock seconds of `fn(*args)` including `block_until_ready` (compiles in warm-up).

  Args:
    fn: a (jitted) function.
    *args: its arguments.
    repeats: timed calls, >= 1.
    warmup: untimed calls first (the first one compiles), >= 1.

  Returns:
    median seconds per call.
  """
  if repeats < 1 or warmup < 1:
    raise ValueError(f'repeats={repeats} and warmup={warmup} must be >= 1.')
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def interleaved_min_seconds(calls, repeats: int = 20) -> list[float]:
  """Fastest observed seconds of each call in `calls` [(fn, args), ...], timed round-robin.

  On a shared machine the minimum over interleaved repeats is the least noisy estimate of the
  uncontended time (the median picks up whatever else runs during one call's block of repeats).
  """
  if repeats < 1:
    raise ValueError(f'repeats={repeats} must be >= 1.')
  for fn, args in calls:
    jax.block_until_ready(fn(*args))  # compile
  best = [float('inf')] * len(calls)
  for _ in range(repeats):
    for i, (fn, args) in enumerate(calls):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      best[i] = min(best[i], time.perf_counter() - start)
  return best
