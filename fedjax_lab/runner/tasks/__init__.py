"""Analyses that are not a training run, chosen by `config.task` (default 'train': a training run).

  TASKS[name](config, workdir) -> dict

reads its arguments from the config (mostly `config.study`), calls library functions with plain
arguments, and returns a JSON-ready dict that `run_task` writes to WORKDIR/result.json (with
WORKDIR/summary.json, so a sweep skips a finished task like a finished run). Figure scripts read
result.json. Any training such a task needs runs through `fedjax_lab.engine.scan_rounds`.

  inversion_progress     DLG / iDLG reconstructions over the attack's steps (privacy.py)
  inversion_defenses     reconstruction quality and FedSGD accuracy vs defence strength (privacy.py)
  gossip_spectrum        pure gossip per topology beside the spectral rate rho^(2k) (gossip.py)
  gossip_disconnected    two components converge to two models (gossip.py)
  gossip_least_squares   D-PSGD vs gradient tracking vs exact diffusion on exact least squares (gossip.py)
  async_slow_worker      one very slow worker: async, damping, SSP, FedBuff, sync (systems.py)
  async_timeline         Gantt intervals of sync, async and SSP (systems.py)
  async_staleness        staleness histograms under several straggler models (systems.py)
  ray_parameter_server   measured Ray wall-clock next to the simulator's (systems.py)
  speedup_model          modelled speedup of synchronous data parallelism vs m (systems.py)
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from fedjax_lab.runner.tasks import gossip, privacy, systems

TASKS: dict[str, Callable[[ml_collections.ConfigDict, str], dict]] = {
    'inversion_progress': privacy.inversion_progress,
    'inversion_defenses': privacy.inversion_defenses,
    'gossip_spectrum': gossip.gossip_spectrum,
    'gossip_disconnected': gossip.gossip_disconnected,
    'gossip_least_squares': gossip.gossip_least_squares,
    'async_slow_worker': systems.async_slow_worker,
    'async_timeline': systems.async_timeline,
    'async_staleness': systems.async_staleness,
    'ray_parameter_server': systems.ray_parameter_server,
    'speedup_model': systems.speedup_model,
}


def jsonable(value: Any):
  """Plain JSON values: numpy scalars/arrays to Python, non-finite floats to 'inf' / '-inf' / None."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray) or isinstance(value, jax.Array):
    return jsonable(np.asarray(value).tolist())
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating, float)):
    value = float(value)
    if math.isfinite(value):
      return value
    return None if math.isnan(value) else ('inf' if value > 0 else '-inf')
  if isinstance(value, (np.bool_,)):
    return bool(value)
  return value


def run_task(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs TASKS[config.task]; writes WORKDIR/result.json and summary.json; returns the summary."""
  name = config.task
  if name not in TASKS:
    raise ValueError(f"Unknown config.task={name!r}; choose 'train' or one of {sorted(TASKS)}.")
  os.makedirs(workdir, exist_ok=True)
  tic = time.time()
  result = TASKS[name](config, workdir)
  result = jsonable({**result, 'task': name, 'config': config.to_dict(),
                     'machine': f'{jax.default_backend()}, {os.cpu_count()} cores, jax {jax.__version__}'})
  with open(os.path.join(workdir, 'result.json'), 'w') as f:
    json.dump(result, f)
  summary = {'task': name, 'rounds': int(config.get('rounds', 0)), 'seconds': time.time() - tic,
             'final': result.get('headline', {})}
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(jsonable(summary), f, indent=2)
  return summary


def read_result(workdir: str) -> dict:
  """WORKDIR/result.json of a finished task."""
  with open(os.path.join(workdir, 'result.json')) as f:
    return json.load(f)
