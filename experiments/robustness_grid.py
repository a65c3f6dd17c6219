r"""The robustness grid: attack x defence x heterogeneity x Byzantine fraction, one table.

  python -m experiments.robustness_grid --config=configs/robust_grid.py --outdir=runs/robust_grid
  python -m experiments.robustness_grid --config=configs/robust_grid.py:smoke --outdir=/tmp/grid

Each (heterogeneity, attack, defence) cell is built once with the runner's builders and compiled
once (`eval_every` rounds per jitted lax.scan); every Byzantine fraction and seed then reuses
that program, because who is Byzantine is a [K] mask passed as an argument. Fraction 0 of the
first attack is the no-attack column (an attack with nobody Byzantine changes nothing).

Writes OUTDIR/results.json (every cell's accuracy and backdoor-success curves) and
OUTDIR/results.md (final test accuracy; for backdoors "clean accuracy / attack success").
Re-running with the same OUTDIR skips cells already in results.json.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_flags

from fedjax_lab import aggregators, attacks
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.runner import builders
from fedjax_lab.runner.train import evaluate_batched

BACKDOOR_ATTACKS = ('backdoor', 'backdoor_boosted')


def cell_config(grid: ml_collections.ConfigDict, partition: str, attack: str, defence: str,
                fraction: float | None = None) -> ml_collections.ConfigDict:
  """The runner config of one grid cell (also usable with experiments/run.py).

  Args:
    grid: the grid config (configs/robust_grid.py).
    partition, attack, defence: names from grid.partitions / grid.attacks / grid.defences.
    fraction: config.attack.fraction (default: the grid's largest).
  """
  for value, table, field in ((partition, grid.partitions, 'grid.partitions'),
                              (attack, grid.attacks, 'grid.attacks'),
                              (defence, grid.defences, 'grid.defences')):
    if value not in table:
      raise ValueError(f'Unknown {field} entry {value!r}; choose one of {sorted(table)}.')
  config = ml_collections.ConfigDict(grid.base.to_dict())
  config.data.update(grid.partitions[partition].to_dict())
  config.attack = ml_collections.ConfigDict(grid.attacks[attack].to_dict())
  config.attack.fraction = max(grid.grid.fractions) if fraction is None else fraction
  section = grid.defences[defence].to_dict()
  config.preaggregation = ml_collections.ConfigDict(section.pop('preaggregation', {'name': 'none'}))
  config.aggregator = ml_collections.ConfigDict(section)
  config.name = f'{partition}-{attack}-{defence}'
  return config


def validate_cell(config: ml_collections.ConfigDict, fractions) -> None:
  """Clear errors before compiling: unknown attack, fractions the defence cannot survive."""
  builders.build_attack(config, num_classes=10)  # unknown name or field -> ValueError
  for fraction in fractions:
    aggregators.check_byzantine_fraction(config.aggregator.name, fraction)


def make_block(algorithm, clients_per_round: int, dropout_rate: float, num_rounds: int):
  """A jitted `num_rounds`-round lax.scan; the Byzantine mask is an argument (never a constant)."""

  @functools.partial(jax.jit, donate_argnums=(0,))
  def run_block(state, data: FederatedData, byzantine, base_key):
    def one_round(state, _):
      key = jax.random.fold_in(base_key, state.round)
      sample_key, step_key = jax.random.split(key)
      inputs = sampling.sample_round(data, sample_key, clients_per_round, dropout_rate, byzantine)
      return algorithm.step(state, inputs, step_key)
    return jax.lax.scan(one_round, state, None, length=num_rounds)

  return run_block


@functools.lru_cache(maxsize=8)
def _dataset(data_items: tuple, seed: int):
  config = ml_collections.ConfigDict({'data': dict(data_items), 'seed': seed})
  return builders.build_dataset(config)


def run_cell(config: ml_collections.ConfigDict, fractions, seeds=(0,)) -> list[dict[str, Any]]:
  """Trains one cell for every (seed, fraction) with one compiled program.

  Returns:
    One dict per (seed, fraction): rounds, test_accuracy and backdoor_success curves, finals.
  """
  validate_cell(config, fractions)
  dataset = _dataset(tuple(sorted(config.data.to_dict().items())), config.seed)
  train = dataset.train
  model = builders.build_model(config, dataset.input_shape, dataset.num_classes)
  algorithm = builders.build_algorithm(config, model, train, dataset.num_classes, mesh=None)
  data = FederatedData(*(jnp.asarray(a) for a in train))
  test_x, test_y = jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y)
  backdoor = config.attack.name in BACKDOOR_ATTACKS
  target = config.attack.get('target_label', 0)
  trigger = attacks.corner_trigger(dataset.input_shape, config.attack.get('trigger_size', 2),
                                   config.attack.get('trigger_value', 1.0))

  @jax.jit
  def evaluate(params):
    metrics = evaluate_batched(model, params, test_x, test_y)
    metrics['backdoor_success'] = attacks.backdoor_success(model, params, test_x, test_y, trigger, target)
    return metrics

  eval_every = config.eval_every
  blocks = {}
  results = []
  for seed in seeds:
    for fraction in fractions:
      tic = time.time()
      byzantine = sampling.byzantine_mask(train.num_clients, fraction, seed=seed + 1)
      init_key, base_key = jax.random.split(jax.random.key(seed))
      state = algorithm.init(model.init(init_key))
      first = jax.device_get(evaluate(state.params))
      curve = {'rounds': [0], 'test_accuracy': [float(first['accuracy'])],
               'backdoor_success': [float(first['backdoor_success'])], 'train_loss': [None]}
      diverged = False
      done = 0
      while done < config.rounds:
        length = min(eval_every, config.rounds - done)
        if length not in blocks:
          blocks[length] = make_block(algorithm, config.clients_per_round, config.dropout_rate, length)
        state, metrics = blocks[length](state, data, byzantine, base_key)
        done += length
        losses = np.asarray(metrics['train_loss'])
        diverged = diverged or not np.all(np.isfinite(losses))
        evaluated = jax.device_get(evaluate(state.params))
        curve['rounds'].append(done)
        curve['test_accuracy'].append(float(evaluated['accuracy']))
        curve['backdoor_success'].append(float(evaluated['backdoor_success']))
        curve['train_loss'].append(float(losses[-1]) if np.isfinite(losses[-1]) else None)
      results.append({
          'fraction': float(fraction), 'seed': int(seed), 'diverged': bool(diverged),
          'final_accuracy': curve['test_accuracy'][-1],
          'final_backdoor_success': curve['backdoor_success'][-1] if backdoor else None,
          'seconds': time.time() - tic, **curve})
  return results


def run_grid(grid: ml_collections.ConfigDict, outdir: str) -> list[dict[str, Any]]:
  """Runs every cell of the grid (skipping those already in OUTDIR/results.json)."""
  os.makedirs(outdir, exist_ok=True)
  path = os.path.join(outdir, 'results.json')
  cells: list[dict] = []
  if os.path.exists(path):
    with open(path) as f:
      cells = json.load(f)['cells']
  done = {(c['partition'], c['attack'], c['defence']) for c in cells}
  fractions = tuple(grid.grid.fractions)
  for partition in grid.grid.partitions:
    for index, attack in enumerate(grid.grid.attacks):
      # Fraction 0 is the same run for every attack: do it once, with the first.
      cell_fractions = fractions if index == 0 else tuple(f for f in fractions if f > 0)
      for defence in grid.grid.defences:
        if (partition, attack, defence) in done:
          continue
        config = cell_config(grid, partition, attack, defence)
        tic = time.time()
        runs = run_cell(config, cell_fractions, tuple(grid.seeds))
        seconds = time.time() - tic
        for run in runs:
          cells.append({'partition': partition, 'attack': attack if run['fraction'] > 0 else 'none',
                        'defence': defence, **run})
        if not any(r['fraction'] > 0 for r in runs):
          continue
        logging.info('%s / %s / %s: %s (%.1f s)', partition, attack, defence,
                     ', '.join(f"{r['fraction']:.2f}->{r['final_accuracy']:.3f}" for r in runs), seconds)
        _write(path, grid, cells)
  _write(path, grid, cells)
  with open(os.path.join(outdir, 'results.md'), 'w') as f:
    f.write(markdown_table(cells, grid))
  return cells


def load_or_run(results: str, config_arg: str = 'quick') -> tuple[list[dict], ml_collections.ConfigDict]:
  """Cells and grid config from a results.json; runs configs/robust_grid.py:`config_arg` into
  the same folder first if the file does not exist (for the figure scripts)."""
  if not os.path.exists(results):
    from configs import robust_grid  # the repository root is on sys.path under `python -m`
    logging.info('%s not found: running configs/robust_grid.py:%s first', results, config_arg)
    run_grid(robust_grid.get_config(config_arg), os.path.dirname(results) or '.')
  with open(results) as f:
    payload = json.load(f)
  return payload['cells'], ml_collections.ConfigDict(payload['config'])


def _write(path, grid, cells):
  payload = {'machine': f'{platform.machine()} {os.cpu_count()} cores, jax {jax.__version__}, '
                        f'{jax.devices()[0].platform}',
             'config': grid.to_dict(), 'cells': cells}
  with open(path + '.tmp', 'w') as f:
    json.dump(payload, f, indent=1, default=str)
  os.replace(path + '.tmp', path)


def summarize(cells, reducer=np.mean) -> dict[tuple, dict[str, float]]:
  """(partition, attack, defence, fraction) -> mean final accuracy / backdoor success over seeds."""
  groups: dict[tuple, list] = {}
  for c in cells:
    groups.setdefault((c['partition'], c['attack'], c['defence'], c['fraction']), []).append(c)
  out = {}
  for key, runs in groups.items():
    backdoor = [r['final_backdoor_success'] for r in runs if r['final_backdoor_success'] is not None]
    out[key] = {'accuracy': float(reducer([r['final_accuracy'] for r in runs])),
                'backdoor_success': float(reducer(backdoor)) if backdoor else None,
                'diverged': any(r['diverged'] for r in runs)}
  return out


def markdown_table(cells, grid) -> str:
  """One table per heterogeneity: rows are defences, columns attack@fraction (final accuracy %)."""
  table = summarize(cells)
  fractions = [f for f in grid.grid.fractions if f > 0]
  lines = [f'# Robustness grid ({grid.base.data.name}, {grid.base.model.name} {tuple(grid.base.model.hidden)}, '
           f'{grid.base.clients_per_round} clients, {grid.base.rounds} rounds)\n',
           'Final test accuracy (%). Backdoor columns: clean accuracy / attack success (%). '
           '"div" marks a run whose training loss became non-finite.\n']
  for partition in grid.grid.partitions:
    columns = [('none', 0.0)] + [(a, f) for a in grid.grid.attacks for f in fractions]
    lines.append(f'\n## {partition}\n')
    lines.append('| defence | ' + ' | '.join('no attack' if a == 'none' else f'{a} {f:.0%}' for a, f in columns) + ' |')
    lines.append('|---' * (len(columns) + 1) + '|')
    for defence in grid.grid.defences:
      row = []
      for attack, fraction in columns:
        entry = table.get((partition, attack, defence, fraction))
        if entry is None:
          row.append('')
          continue
        text = f"{100 * entry['accuracy']:.1f}"
        if entry['backdoor_success'] is not None:
          text += f" / {100 * entry['backdoor_success']:.0f}"
        row.append(text + (' div' if entry['diverged'] else ''))
      lines.append(f'| {defence} | ' + ' | '.join(row) + ' |')
  return '\n'.join(lines) + '\n'


_CONFIG = config_flags.DEFINE_config_file('config', 'configs/robust_grid.py', 'Grid config (configs/robust_grid.py[:arg]).')
_OUTDIR = flags.DEFINE_string('outdir', 'runs/robust_grid', 'Where results.json and results.md go.')


def main(argv):
  del argv
  cells = run_grid(_CONFIG.value, _OUTDIR.value)
  print(markdown_table(cells, _CONFIG.value))


if __name__ == '__main__':
  app.run(main)
