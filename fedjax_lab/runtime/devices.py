"""Start-up: one CPU device per usable core, set before JAX starts, unless the user chose a count.

A FedAvg round on one CPU device is one instruction stream: it keeps one core busy however many the
machine has. JAX gives one CPU device per process unless told otherwise before its backend starts,
so the runner's entry points (`experiments/run.py`, `fedjax_lab.runner.run`) call `use_all_cores`
first; the runner then spreads the cohort over the devices (`clients.placement.client_mesh`, where
config.num_devices = 0 means every usable core on CPU and every device on an accelerator).

The user's choice wins: `XLA_FLAGS=--xla_force_host_platform_device_count=N`, `JAX_NUM_CPU_DEVICES=N`
or `jax.config.update('jax_num_cpu_devices', N)` are left alone. Cores are those the process may run
on (`os.sched_getaffinity`), so `taskset -c 0 python -m experiments.run ...` is a one-core run.
"""

from __future__ import annotations

import os
import re

from absl import logging
import jax

from fedjax_lab.clients.placement import usable_cores

_FORCE_FLAG = re.compile(r'--xla_force_host_platform_device_count=(\d+)')


def user_cpu_device_count() -> int | None:
  """The CPU device count the user chose (XLA_FLAGS, JAX_NUM_CPU_DEVICES or jax.config), or None."""
  match = _FORCE_FLAG.search(os.environ.get('XLA_FLAGS', ''))
  if match:
    return int(match.group(1))
  configured = jax.config.jax_num_cpu_devices  # also set by JAX_NUM_CPU_DEVICES; -1 when unset
  return int(configured) if configured is not None and configured > 0 else None


def use_all_cores(num_devices: int = 0) -> int | None:
  """Asks JAX for one CPU device per usable core (or `num_devices` if more); call before JAX starts.

  A run with config.num_devices = 1 still creates a device per core, so a later run in the same
  process (a notebook, a sweep) can use them: the device count is fixed when JAX starts.

  Does nothing when the user already chose a CPU device count (their choice wins), when JAX's
  backend is already running (the count is fixed for the life of the process), or in a
  multi-process run (`jax.distributed`: one CPU device per process, since several per process can
  deadlock repeated cross-process collectives). Harmless on a GPU or TPU machine: it only sizes the
  CPU backend.

  Args:
    num_devices: config.num_devices (0: auto); more than the usable cores creates that many devices
      (several per core: for testing multi-device code, not for speed).

  Returns:
    The CPU device count JAX will use, or None when this call could not choose it (backend already
    running, multi-process run).
  """
  chosen = user_cpu_device_count()
  if chosen is not None:
    return chosen
  if jax.distributed.is_initialized():
    return None
  count = max(int(num_devices or 0), usable_cores())
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # the backend is running: too late to change its device count
    logging.info('JAX is already initialised; keeping its %d device(s).', jax.device_count())
    return None
  return count
