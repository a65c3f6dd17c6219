"""A sweep: one config that lists runs, each its own resumable workdir.

A study config sets `config.sweep` to a tuple of runs,

  config.sweep = (
      {'name': 'iid_E1_B10', 'overrides': {'data.partition': 'iid', 'algorithm.local_epochs': 1}},
      ...)

and `run_sweep(config, workdir)` runs each with `fedjax_lab.runner.train.run` into WORKDIR/<name>/:
the config's own fields with the run's overrides applied (dotted paths; a field the section does not
have yet is added). A run whose summary.json exists is skipped (logged), so an interrupted sweep
resumes run by run (and a run interrupted mid-way resumes from its checkpoint). WORKDIR/sweep.json
lists the runs, their overrides and folders; figure scripts read it with `read_sweep`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from typing import Any, Callable

from absl import logging
import ml_collections

_NAME = re.compile(r'^[A-Za-z0-9_.=+-]+$')


def validate_sweep(sweep) -> None:
  """Raises ValueError naming config.sweep when an entry is malformed or names repeat."""
  seen = set()
  for index, entry in enumerate(sweep):
    entry = dict(entry)
    unknown = sorted(set(entry) - {'name', 'overrides'})
    if unknown or 'name' not in entry:
      raise ValueError(f'config.sweep[{index}]={entry!r} must be a dict with a "name" and optional "overrides" '
                       f'(unknown keys: {unknown}).')
    name = entry['name']
    if not isinstance(name, str) or not _NAME.match(name):
      raise ValueError(f'config.sweep[{index}].name={name!r} must be a non-empty folder name of letters, digits '
                       'and _ . = + -.')
    if name in seen:
      raise ValueError(f'config.sweep[{index}].name={name!r} repeats: every run needs its own folder.')
    seen.add(name)
    for path in dict(entry.get('overrides') or {}):
      if not isinstance(path, str) or not path or path.startswith('sweep'):
        raise ValueError(f'config.sweep[{index}] ({name}) overrides {path!r}: give a field path like '
                         '"data.partition" (a sweep cannot override config.sweep).')


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with each dotted path set (sections created or extended as needed)."""
  config = ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))
  for path, value in overrides.items():
    *sections, field = path.split('.')
    node = config
    for section in sections:
      if section not in node or node[section] is None:
        node[section] = ml_collections.ConfigDict()
      node = node[section]
      if not isinstance(node, ml_collections.ConfigDict):
        raise ValueError(f'config.sweep override {path!r}: config.{section} is not a section.')
    node[field] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  return config


def run_config(config: ml_collections.ConfigDict, entry) -> ml_collections.ConfigDict:
  """The config of one sweep entry: the config's fields, the entry's overrides, no sweep."""
  entry = dict(entry)
  run = apply_overrides(config, dict(entry.get('overrides') or {}))
  run.sweep = ()
  run.name = f'{config.get("name", "sweep")}/{entry["name"]}'
  return run


def run_sweep(config: ml_collections.ConfigDict, workdir: str,
              run_one: Callable[[ml_collections.ConfigDict, str], dict]) -> dict:
  """Runs every entry of config.sweep into WORKDIR/<name>/, skipping finished ones; writes sweep.json.

  `run_one(config, folder)` runs one entry (`fedjax_lab.runner.train.run`, which dispatches here: it is
  passed in, so this module does not import the trainer back).

  Returns:
    {'runs': [{'name', 'overrides', 'workdir', 'skipped', 'final'}], 'sweep': workdir}.
  """
  sweep = tuple(config.sweep)
  validate_sweep(sweep)
  configs = [run_config(config, entry) for entry in sweep]  # every override applies before anything runs
  os.makedirs(workdir, exist_ok=True)
  tic = time.time()
  listing = []
  for entry, run in zip(sweep, configs):
    entry = dict(entry)
    folder = os.path.join(workdir, entry['name'])
    summary_path = os.path.join(folder, 'summary.json')
    skipped = os.path.exists(summary_path)
    if skipped:
      logging.info('Sweep %s: %s is finished (%s exists), skipping it.', config.get('name', ''), entry['name'],
                   summary_path)
      with open(summary_path) as f:
        summary = json.load(f)
    else:
      logging.info('Sweep %s: running %s into %s', config.get('name', ''), entry['name'], folder)
      summary = run_one(run, folder)
    listing.append({'name': entry['name'], 'overrides': _plain(dict(entry.get('overrides') or {})),
                    'workdir': entry['name'], 'skipped': skipped, 'final': _plain(summary.get('final', {}))})
  result = {'name': config.get('name', ''), 'runs': listing}
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump(result, f, indent=1, default=str)
  # The fields experiments/run.py prints for a single run.
  result.update(sweep=workdir, rounds=int(config.rounds), seconds=time.time() - tic, final={})
  return result


def _plain(value):
  return json.loads(json.dumps(value, default=str))


def read_sweep(workdir: str) -> dict[str, dict]:
  """{run name: {'overrides', 'metrics' (rows of metrics.jsonl), 'summary', 'path'}} of a finished sweep."""
  from fedjax_lab.runner import metrics_io
  with open(os.path.join(workdir, 'sweep.json')) as f:
    listing = json.load(f)['runs']
  runs = {}
  for entry in listing:
    path = os.path.join(workdir, entry['workdir'])
    summary = {}
    if os.path.exists(os.path.join(path, 'summary.json')):
      with open(os.path.join(path, 'summary.json')) as f:
        summary = json.load(f)
    runs[entry['name']] = {'overrides': entry['overrides'], 'path': path, 'summary': summary,
                           'metrics': metrics_io.read_jsonl(os.path.join(path, 'metrics.jsonl'))}
  return runs
