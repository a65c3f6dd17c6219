"""Readers shared by the figure scripts: a study's workdir (sweep.json, each run's metrics.jsonl, each
task's result.json) gathered into the tables and curves a figure plots. Nothing here trains."""

from __future__ import annotations

import argparse
import math
import os

import numpy as np

from fedjax_lab.runner import sweep as sweep_lib
from fedjax_lab.runner import tasks as tasks_lib


def arguments(description: str, workdir: str, argv=None, extra=None):
  """--workdir (the study's `experiments.run --workdir`) and --outdir, plus `extra(parser)`."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--workdir', default=workdir, help='the study sweep/run folder written by experiments.run')
  parser.add_argument('--outdir', default='figures_out', help='where the PNG and PDF go')
  if extra is not None:
    extra(parser)
  return parser.parse_args(argv)


def save_figure(fig, outdir: str, name: str) -> list[str]:
  """Writes outdir/name.png (150 dpi) and outdir/name.pdf; returns the paths."""
  os.makedirs(outdir, exist_ok=True)
  paths = [os.path.join(outdir, f'{name}.{ext}') for ext in ('png', 'pdf')]
  for path in paths:
    fig.savefig(path, dpi=150, bbox_inches='tight')
  print('wrote', paths[0])
  return paths


def runs(workdir: str) -> dict[str, dict]:
  """{run name: {'overrides', 'metrics', 'summary', 'path'}} (`sweep.read_sweep`)."""
  return sweep_lib.read_sweep(workdir)


def task(workdir: str, name: str | None = None) -> dict:
  """result.json of a task run (WORKDIR/<name>/ in a sweep, or WORKDIR itself)."""
  return tasks_lib.read_result(os.path.join(workdir, name) if name else workdir)


def curve(run: dict, key: str, skip_initial: bool = True) -> list:
  """Values of `key` over a run's evaluations (the round-0 row dropped unless skip_initial=False)."""
  rows = run['metrics'][1:] if skip_initial else run['metrics']
  return [_number(r.get(key)) for r in rows]


def rounds(run: dict, skip_initial: bool = True) -> list[int]:
  rows = run['metrics'][1:] if skip_initial else run['metrics']
  return [r['round'] for r in rows]


def _number(value):
  if isinstance(value, str):
    return float(value)
  return value


def rounds_to_target(accuracy, target: float) -> int | None:
  """1-based first round whose test accuracy reaches target; None if never (eval_every = 1)."""
  hits = np.flatnonzero(np.asarray(accuracy, float) >= target)
  return int(hits[0]) + 1 if hits.size else None


def tail_mean(values, fraction: float = 0.1) -> float:
  values = np.asarray(values, float)
  return float(values[-max(1, int(len(values) * fraction)):].mean())


def final(run: dict, key: str):
  return _number(run['metrics'][-1].get(key))


def finite(value) -> bool:
  return value is not None and math.isfinite(float(value))


# ----------------------------------------------------------------------------- sync / async

COLORS = {'sync': 'black', 'async': 'tab:red', 'async, no slow worker': 'tab:gray', 'async, lr/(1+tau)': 'tab:blue',
          'SSP': 'tab:green', 'FedBuff': 'tab:purple'}


def method_color(name: str) -> str:
  for key in sorted(COLORS, key=len, reverse=True):
    if name.startswith(key):
      return COLORS[key]
  return 'tab:orange'


def figure_args(description: str, argv=None, workdir: str = 'runs/sync_async'):
  return arguments(description.split('\n')[0], workdir, argv)


def sync_async(name: str, workdir: str) -> dict:
  """A sync/async study's data: 'loss' from the sweep's runs, the analyses from their result.json."""
  if name != 'loss':
    return task(workdir, name)
  panels, m = {}, None
  for run_name, run in runs(workdir).items():
    if '_' not in run_name or not run_name.startswith('p'):
      continue
    probability, method = run_name[1:].split('_', 1)
    rows = run['metrics']
    import json  # pylint: disable=g-import-not-at-top
    with open(os.path.join(run['path'], 'config.json')) as f:
      config = json.load(f)
    m = config['data']['num_clients']
    per_row = m if method == 'sync' else 1  # gradients per round
    label = {'sync': 'sync', 'async': 'async'}.get(method, f"FedBuff, K={config['algorithm'].get('buffer_size')}")
    panels.setdefault(probability, {})[label] = {
        'gradients': [r['round'] * per_row for r in rows],
        'time': [0.0] + [r['sim_time'] for r in rows[1:]],
        'loss_gap': [max(float(r['loss_gap']), 1e-30) for r in rows]}
  return {'num_workers': m, 'panels': panels}


# ----------------------------------------------------------------------------- decentralized


def config_of(run: dict) -> dict:
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(run['path'], 'config.json')) as f:
    return json.load(f)


def gossip_training(run: dict) -> dict:
  """The curves a gossip figure plots from one runner run (evaluated every eval_every iterations)."""
  rows = run['metrics']
  return {'step': [r['round'] for r in rows], 'test_accuracy': [r['test_accuracy'] for r in rows],
          'test_loss': [r['test_loss'] for r in rows], 'node_test_accuracy': [r['test_node_accuracy_mean'] for r in rows],
          'node_test_accuracy_min': [r['test_node_accuracy_worst'] for r in rows],
          'global_train_loss': [r.get('global_train_loss') for r in rows],
          'consensus_error': [r.get('consensus_error', float('nan')) for r in rows]}


# ----------------------------------------------------------------------------- robustness grid


def robust_cells(workdir: str):
  """(cells, grid study section) of a configs/robust_grid.py sweep, in the old results.json shape."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  cells, study = [], None
  for name, run in runs(workdir).items():
    partition, attack, defence, fraction, seed = name.split('-')
    rows = run['metrics']
    config = config_of(run)
    study = study or config['study']
    backdoor = 'backdoor_success' in rows[-1]
    cells.append({'partition': partition, 'attack': attack, 'defence': defence, 'fraction': float(fraction[1:]),
                  'seed': int(seed[1:]), 'rounds': [r['round'] for r in rows],
                  'test_accuracy': [r['test_accuracy'] for r in rows],
                  'backdoor_success': [r.get('backdoor_success') for r in rows],
                  'final_accuracy': rows[-1]['test_accuracy'],
                  'final_backdoor_success': rows[-1]['backdoor_success'] if backdoor else None,
                  'diverged': any(isinstance(r.get('train_loss'), str) for r in rows)})
  grid = ml_collections.ConfigDict({'grid': study['grid'], 'base': {'data': config['data'], 'model': config['model'],
                                                                    'rounds': config['rounds'],
                                                                    'clients_per_round': config['clients_per_round']}})
  return cells, grid


def summarize(cells, reducer=np.mean) -> dict[tuple, dict[str, float]]:
  """(partition, attack, defence, fraction) -> mean final accuracy / backdoor success over seeds."""
  groups: dict[tuple, list] = {}
  for c in cells:
    groups.setdefault((c['partition'], c['attack'], c['defence'], c['fraction']), []).append(c)
  out = {}
  for key, group in groups.items():
    backdoor = [r['final_backdoor_success'] for r in group if r['final_backdoor_success'] is not None]
    out[key] = {'accuracy': float(reducer([r['final_accuracy'] for r in group])),
                'backdoor_success': float(reducer(backdoor)) if backdoor else None,
                'diverged': any(r['diverged'] for r in group)}
  return out


def gossip(study: str, workdir: str) -> dict:
  """A decentralized study's data in the shape its figure plots, from the study's workdir."""
  if study == 'disconnected':
    result = task(workdir)
    return {**result, 'config': result['config']['study']}
  every = runs(workdir)
  trained = {name: run for name, run in every.items() if run['metrics']}
  config = config_of(next(iter(trained.values())))
  old = {**config.get('study', {}), 'data': config['data'], 'learning_rate': config['algorithm']['learning_rate'],
         'batch_size': config['algorithm']['batch_size'], 'steps': config['rounds']}
  if study == 'topologies':
    spectrum = task(workdir, 'spectrum')
    return {'config': old, 'gossip': spectrum['gossip'],
            'training': {name: gossip_training(run) for name, run in trained.items()}}
  if study == 'scaling':
    rows = []
    for name, run in trained.items():
      c = config_of(run)
      last = run['metrics'][-1]
      rows.append({'seed': c['seed'], 'num_nodes': c['data']['num_clients'], 'topology': c['topology']['name'],
                   'test_accuracy': last['test_accuracy'], 'node_test_accuracy': last['test_node_accuracy_mean'],
                   'consensus_error': last['consensus_error'], 'train_loss_last10pct': last['train_loss']})
    old['topologies'] = list(dict.fromkeys(r['topology'] for r in rows))
    return {'config': old, 'rows': rows}
  if study == 'tracking':
    least_squares = task(workdir, 'least_squares')
    classification = {}
    for name, run in trained.items():
      partition, algorithm = name.split('_', 1)
      label = {'dpsgd': 'D-PSGD', 'gradient_tracking': 'gradient tracking', 'exact_diffusion': 'exact diffusion'}
      classification[f'{partition}/{label[algorithm]}'] = gossip_training(run)
    return {'config': {**old, **least_squares['config']['study']}, 'optimum': least_squares['optimum'],
            'least_squares': least_squares['least_squares'], 'classification': classification}
  raise ValueError(f'Unknown decentralized study {study!r}.')
