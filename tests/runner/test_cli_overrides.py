"""Any section field can be set from the command line of experiments.run, and unknown ones are refused.

Each case is a real `python -m experiments.run --config=configs/X.py:smoke --workdir=TMP --config...`.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = ['--config.data.name=digits', '--config.data.num_clients=12', '--config.data.partition=iid',
          '--config.model.hidden=(8,)']


def _run(config, workdir, *overrides):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  command = [sys.executable, '-m', 'experiments.run', f'--config={config}', f'--workdir={workdir}', *overrides]
  return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _saved_config(workdir):
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)


@pytest.mark.parametrize('overrides, expected', [
    (['--config.clients_per_round=6', '--config.aggregator.name=krum', '--config.aggregator.f=1'],
     {'name': 'krum', 'f': 1}),
    (['--config.aggregator.name=trimmed_mean', '--config.aggregator.beta=0.2'],
     {'name': 'trimmed_mean', 'beta': 0.2}),
])
def test_aggregator_fields_from_the_command_line(tmp_path, overrides, expected):
  result = _run('configs/fedavg_mnist1d.py:smoke', tmp_path, *DIGITS, *overrides)
  assert result.returncode == 0, result.stderr[-3000:]
  assert _saved_config(tmp_path)['aggregator'] == expected


def test_topology_fields_from_the_command_line(tmp_path):
  result = _run('configs/dpsgd_digits.py:smoke', tmp_path / 'er', '--config.topology.name=erdos_renyi',
                '--config.topology.edge_probability=0.2', '--config.topology.allow_disconnected=True')
  assert result.returncode == 0, result.stderr[-3000:]
  topology = _saved_config(tmp_path / 'er')['topology']
  assert topology['edge_probability'] == 0.2 and topology['allow_disconnected'] is True
  # A disconnected graph is refused unless allowed, and the message says which field allows it.
  result = _run('configs/dpsgd_digits.py:smoke', tmp_path / 'disconnected', '--config.topology.name=disconnected')
  assert result.returncode != 0 and 'config.topology.allow_disconnected' in result.stderr
  result = _run('configs/dpsgd_digits.py:smoke', tmp_path / 'allowed', '--config.topology.name=disconnected',
                '--config.topology.allow_disconnected=True')
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize('overrides, message', [
    (['--config.aggregator.name=krum'], "ValueError: config.aggregator.f is required by aggregator 'krum'"),
    (['--config.aggregator.bogus=1'], "ValueError: config.aggregator.bogus is not a field of aggregator 'mean'; "
                                      'valid fields: name.'),
    (['--config.roudns=3'], 'ValueError: config.roudns is not a field of a run'),
    (['--config.algorithm.client_lr=nan'], 'ValueError: config.algorithm.client_lr=nan must be a finite number'),
    (['--config.seed=-1'], 'ValueError: config.seed=-1 must be >= 0'),
])
def test_bad_overrides_are_refused_naming_the_field(tmp_path, overrides, message):
  result = _run('configs/fedavg_mnist1d.py:smoke', tmp_path, *DIGITS, *overrides)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-3000:]
  assert not (tmp_path / 'metrics.jsonl').exists()


def test_existing_fields_keep_their_types(tmp_path):
  # config.rounds is an int in the config file: a string is still a flag error, not a new field.
  result = _run('configs/fedavg_mnist1d.py:smoke', tmp_path, '--config.rounds=abc')
  assert result.returncode != 0 and 'rounds' in result.stderr
