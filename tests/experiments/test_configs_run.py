"""Every config in configs/ runs as `:smoke` through the runner (experiments.run's path), found by globbing.

A sweep config writes sweep.json and one workdir per run; a task config writes result.json; a
training config writes metrics.jsonl. Every figure script that names the config in its docstring then
renders from that workdir. One subprocess test runs `python -m experiments.run` on a sweep
and re-runs it: the second run skips the finished runs.
"""

import glob
import importlib
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from fedjax_lab.runner import run
from fedjax_lab.runner import sweep as sweep_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith('_') and os.path.basename(p) != 'base.py')


def _smoke(name):
  return importlib.import_module(f'configs.{name}').get_config('smoke')


def _figures_of(config_name: str) -> list[str]:
  """Figure scripts whose docstring runs this config with its default variant (`--config=configs/X.py `)."""
  pattern = re.compile(r'--config=configs/' + re.escape(config_name) + r'\.py\s')
  names = []
  for path in sorted(glob.glob(os.path.join(ROOT, 'experiments', 'figures', '[!_]*.py'))):
    with open(path) as f:
      if pattern.search(f.read()):
        names.append(os.path.basename(path)[:-3])
  return names


def test_every_gossip_config_has_its_figure():
  for study in ('topologies', 'scaling', 'disconnected', 'tracking'):
    assert _figures_of(f'gossip_{study}') == [f'gossip_{study}']


def test_every_config_is_found():
  assert len(CONFIGS) >= 17, CONFIGS


@pytest.mark.parametrize('name', CONFIGS)
def test_config_smoke_runs_through_the_runner(name, tmp_path):
  config = _smoke(name)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # the disconnected study warns on purpose
    summary = run(config, str(tmp_path))
  if config.get('sweep'):
    assert 2 <= len(config.sweep) <= 4, 'a smoke sweep has 2-3 tiny runs'
    runs = sweep_lib.read_sweep(str(tmp_path))
    assert list(runs) == [dict(entry)['name'] for entry in config.sweep]
    for entry, result in runs.items():
      assert result['summary'], entry
      assert result['metrics'] or os.path.exists(os.path.join(result['path'], 'result.json')), entry
  elif config.get('task', 'train') != 'train':
    assert os.path.exists(tmp_path / 'result.json')
  else:
    assert summary['final']['round'] == config.rounds
  # The figure scripts read the workdir the run wrote.
  for figure in _figures_of(name):
    outdir = tmp_path / 'figures'
    importlib.import_module(f'experiments.figures.{figure}').main(['--workdir', str(tmp_path), '--outdir',
                                                                   str(outdir)])
    for ext in ('png', 'pdf'):
      assert os.path.getsize(outdir / f'{figure}.{ext}') > 1000, (figure, ext)


def test_sweep_resumes_run_by_run_from_the_command_line(tmp_path):
  workdir = str(tmp_path / 'sweep')
  command = [sys.executable, '-m', 'experiments.run', '--config=configs/compression_digits.py:smoke',
             f'--workdir={workdir}']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  with open(os.path.join(workdir, 'sweep.json')) as f:
    listing = json.load(f)['runs']
  assert [r['skipped'] for r in listing] == [False, False]
  stamps = {r['name']: os.path.getmtime(os.path.join(workdir, r['name'], 'metrics.jsonl')) for r in listing}
  second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'skipping' in second.stderr
  with open(os.path.join(workdir, 'sweep.json')) as f:
    assert [r['skipped'] for r in json.load(f)['runs']] == [True, True]
  for name, stamp in stamps.items():
    assert os.path.getmtime(os.path.join(workdir, name, 'metrics.jsonl')) == stamp


def test_sweep_entries_are_checked_before_anything_runs(tmp_path):
  config = _smoke('compression_digits')
  config.sweep = ({'name': 'a'}, {'name': 'a'})
  with pytest.raises(ValueError, match=r"config.sweep\[1\].name='a' repeats"):
    run(config, str(tmp_path))
  config.sweep = ({'name': 'a', 'overides': {}},)
  with pytest.raises(ValueError, match='unknown keys'):
    run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'a')


def test_unknown_task_is_refused(tmp_path):
  config = _smoke('gossip_disconnected')
  config.task = 'gossip_disconected'
  with pytest.raises(ValueError, match="Unknown config.task='gossip_disconected'"):
    run(config, str(tmp_path))
