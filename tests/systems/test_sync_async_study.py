"""The sync/async and speedup configs run through the runner, and their figures read the workdirs."""

import importlib
import os

import numpy as np
import pytest

from configs import speedup as speedup_config
from configs import sync_async as sync_async_config
from experiments.figures import _studies
from fedjax_lab.runner import run


def _figure(name):
  return importlib.import_module(f'experiments.figures.{name}')


def test_configs_have_smoke_variants_and_reject_unknown_ones():
  assert sync_async_config.get_config('smoke').study.num_workers < sync_async_config.get_config().study.num_workers
  assert (len(speedup_config.get_config('smoke').study.num_workers)
          < len(speedup_config.get_config().study.num_workers))
  with pytest.raises(ValueError, match='smoke'):
    sync_async_config.get_config('huge')


def test_loss_timeline_staleness_runs_and_figures(tmp_path):
  workdir, outdir = str(tmp_path / 'runs'), str(tmp_path / 'figures')
  run(sync_async_config.get_config('small'), workdir)
  for name in ('sync_async_loss', 'timeline', 'staleness'):
    _figure(name).main(['--workdir', workdir, '--outdir', outdir])
    for ext in ('png', 'pdf'):
      assert os.path.getsize(os.path.join(outdir, f'{name}.{ext}')) > 1000
  loss = _studies.sync_async('loss', workdir)
  for curves in loss['panels'].values():
    sync = curves['sync']
    assert sync['loss_gap'][-1] < 1e-2 * sync['loss_gap'][0]
    assert np.all(np.diff(sync['time']) > 0)
    assert len(curves['async']['loss_gap']) == len(sync['loss_gap'])  # the same number of gradients
    assert curves['async']['gradients'] == sync['gradients']
  staleness = _studies.task(workdir, 'staleness')
  m = staleness['num_workers']
  # Equal speeds: every round of m arrivals has staleness 0, 1, ..., m - 1.
  assert staleness['histograms']['equal speeds']['max'] == m - 1


@pytest.mark.slow
def test_slow_worker_and_speedup_runs_and_figures(tmp_path):
  workdir, outdir = str(tmp_path / 'runs'), str(tmp_path / 'figures')
  config = sync_async_config.get_config('small')
  config.sweep = tuple(e for e in config.sweep if e['name'] == 'slow_worker')
  run(config, workdir)
  _figure('sync_async_slow_worker').main(['--workdir', workdir, '--outdir', outdir])
  speedup_dir = str(tmp_path / 'speedup')
  run(speedup_config.get_config('smoke'), speedup_dir)
  _figure('speedup').main(['--workdir', speedup_dir, '--outdir', outdir])
  for name in ('sync_async_slow_worker', 'speedup'):
    assert os.path.exists(os.path.join(outdir, f'{name}.png'))
  runs = _studies.runs(speedup_dir)
  losses = [_studies.final(r, 'train_loss') for name, r in runs.items() if name.startswith('gd_m')]
  assert len(losses) >= 2 and max(losses) - min(losses) < 1e-4  # exact GD for every m
  for task in _studies.task(speedup_dir, 'model')['tasks'].values():
    for curve in task['curves'].values():
      assert np.all(np.asarray(curve['speedup'])[1:] < np.asarray(curve['num_workers'])[1:] * 1.5)
