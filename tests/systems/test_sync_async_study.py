"""The sync/async study driver and its figures run end to end on the smoke configs."""

import json
import os

import numpy as np
import pytest

from configs import speedup as speedup_config
from configs import sync_async as sync_async_config
from experiments import sync_async as study


def _figure(name):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f'experiments.figures.{name}')


def test_configs_have_smoke_variants_and_reject_unknown_ones():
  assert sync_async_config.get_config('smoke').num_workers < sync_async_config.get_config().num_workers
  assert len(speedup_config.get_config('smoke').num_workers) < len(speedup_config.get_config().num_workers)
  with pytest.raises(ValueError, match='smoke'):
    sync_async_config.get_config('huge')
  with pytest.raises(ValueError, match='studies'):
    study.run_study(speedup_config.get_config('smoke'), '/nonexistent', ['loss'])


def test_loss_timeline_staleness_studies_and_figures(tmp_path):
  workdir, outdir = str(tmp_path / 'runs'), str(tmp_path / 'figures')
  for name in ('sync_async_loss', 'timeline', 'staleness'):
    _figure(name).main(['--smoke', '--workdir', workdir, '--outdir', outdir])
    for ext in ('png', 'pdf'):
      assert os.path.getsize(os.path.join(outdir, f'{name}.{ext}')) > 1000
  with open(study.study_path(workdir, 'loss')) as f:
    loss = json.load(f)
  for curves in loss['panels'].values():
    sync = curves['sync']
    assert sync['loss_gap'][-1] < 1e-2 * sync['loss_gap'][0]
    assert np.all(np.diff(sync['time']) > 0)
    assert len(curves['async']['loss_gap']) == len(sync['loss_gap'])  # the same number of gradients
  with open(study.study_path(workdir, 'staleness')) as f:
    staleness = json.load(f)
  m = staleness['num_workers']
  # Equal speeds: every round of m arrivals has staleness 0, 1, ..., m - 1.
  assert staleness['histograms']['equal speeds']['max'] == m - 1


@pytest.mark.slow
def test_slow_worker_and_speedup_studies_and_figures(tmp_path):
  workdir, outdir = str(tmp_path / 'runs'), str(tmp_path / 'figures')
  for name in ('sync_async_slow_worker', 'speedup'):
    _figure(name).main(['--smoke', '--workdir', workdir, '--outdir', outdir])
    assert os.path.exists(os.path.join(outdir, f'{name}.png'))
  with open(study.study_path(workdir, 'speedup')) as f:
    speedup = json.load(f)
  assert speedup['mlp_gd']['max_abs_difference'] < 1e-4  # exact GD for every m
  for task in speedup['tasks'].values():
    for curve in task['curves'].values():
      assert np.all(np.asarray(curve['speedup'])[1:] < np.asarray(curve['num_workers'])[1:] * 1.5)
