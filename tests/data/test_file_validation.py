"""File data are validated at load: each bad folder fails with the file, client and row named."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fedjax_lab.data import datasets, host, validate
from fedjax_lab.data.datasets import FederatedDataset
from fedjax_lab.data.federated import FederatedData

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K, M, D, CLASSES = 5, 20, 3, 10


def _arrays():
  """A valid data set's arrays: clients of 20, 7, 20, 18, 0 real rows (zero padding), 10 classes."""
  rng = np.random.default_rng(0)
  num_examples = np.array([20, 7, 20, 18, 0], np.int32)
  mask = np.arange(M) < num_examples[:, None]
  x = (rng.normal(size=(K, M, D)) * mask[..., None]).astype(np.float32)
  y = (rng.integers(0, CLASSES, (K, M)) * mask).astype(np.int32)
  test_x = rng.normal(size=(30, D)).astype(np.float32)
  test_y = rng.integers(0, CLASSES, 30).astype(np.int32)
  return dict(x=x, y=y, num_examples=num_examples, test_x=test_x, test_y=test_y)


def _folder(tmp_path, input_shape=(D,), num_classes=CLASSES, **changes) -> str:
  """Writes a data set folder with `changes` applied to the valid arrays; returns its path."""
  a = {**_arrays(), **changes}
  dataset = FederatedDataset(FederatedData(a['x'], a['y'], a['num_examples']), a['test_x'], a['test_y'],
                             input_shape, num_classes, 'tiny', {})
  folder = str(tmp_path / 'data')
  host.save_dataset(dataset, folder)
  return folder


def _fails(folder, *fragments, **kwargs):
  """Loads `folder` through the registry; asserts a ValueError whose message holds every fragment."""
  with pytest.raises(ValueError) as info:
    datasets.load_dataset('federated_npy', data_dir=folder, **kwargs)
  message = str(info.value)
  for fragment in fragments:
    assert fragment in message, message
  return message


def _with(name, index, value):
  """The valid array `name` with one entry replaced."""
  array = _arrays()[name].copy()
  array[index] = value
  return array


def test_a_valid_folder_loads(tmp_path):
  loaded = datasets.load_dataset('federated_npy', data_dir=_folder(tmp_path))
  np.testing.assert_array_equal(loaded.train.y, _arrays()['y'])
  assert (loaded.input_shape, loaded.num_classes) == ((D,), CLASSES)


@pytest.mark.parametrize('label', [12, 10, -1])
def test_label_outside_the_classes_names_client_and_row(tmp_path, label):
  folder = _folder(tmp_path, y=_with('y', (3, 17), label))
  _fails(folder, os.path.join('train', 'y.npy'), f'client 3 row 17 has label {label}, outside [0, 10)',
         'dataset.json')


def test_label_outside_the_classes_on_a_padding_row_is_named_as_padding(tmp_path):
  folder = _folder(tmp_path, y=_with('y', (1, 9), 99))  # client 1 has 7 real rows
  _fails(folder, 'y.npy', 'client 1 row 9 (a padding row, past num_examples[1]=7', 'has label 99')


def test_first_offending_row_is_reported(tmp_path):
  y = _with('y', (2, 5), 40)
  y[0, 19], y[4, 0] = 11, -3
  _fails(_folder(tmp_path, y=y), 'client 0 row 19 has label 11')


def test_float_labels_are_refused_for_classification(tmp_path):
  folder = _folder(tmp_path, y=_arrays()['y'].astype(np.float32))
  _fails(folder, 'y.npy', 'float32 labels', 'astype(np.int32)')


@pytest.mark.parametrize('count, fragment', [(21, 'client 2 has num_examples 21, outside [0, 20]'),
                                             (-2, 'client 2 has num_examples -2, outside [0, 20]')])
def test_num_examples_outside_the_padded_size(tmp_path, count, fragment):
  _fails(_folder(tmp_path, num_examples=_with('num_examples', 2, count)), 'num_examples.npy', fragment)


def test_float_num_examples_are_refused(tmp_path):
  folder = _folder(tmp_path, num_examples=_arrays()['num_examples'].astype(np.float64))
  _fails(folder, 'num_examples.npy', 'float64 counts', 'integers')


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_non_finite_features_name_client_and_row(tmp_path, value):
  folder = _folder(tmp_path, x=_with('x', (3, 4, 1), value))
  _fails(folder, os.path.join('train', 'x.npy'), f'client 3 row 4 holds a non-finite feature ({value})')


def test_non_finite_feature_on_a_padding_row_is_refused_too(tmp_path):
  # Masked rows still go through the model, and NaN * 0 is NaN: padding must be finite.
  _fails(_folder(tmp_path, x=_with('x', (4, 0, 0), np.nan)), 'client 4 row 0 (a padding row')


def test_uint8_features_are_refused_with_the_fix(tmp_path):
  x = (np.abs(_arrays()['x']) * 60).astype(np.uint8)
  _fails(_folder(tmp_path, x=x), 'x.npy', 'uint8 features', 'astype(np.float32)', '255')


def test_feature_shape_must_match_dataset_json(tmp_path):
  _fails(_folder(tmp_path, input_shape=(4,)), 'x.npy', 'shape (3,)', 'dataset.json', 'input_shape [4]')


def test_test_split_lengths_must_agree(tmp_path):
  _fails(_folder(tmp_path, test_y=_arrays()['test_y'][:29]), 'test_x.npy', 'test_y.npy', '30 examples', '(29,)')


def test_test_labels_in_range_and_test_features_finite(tmp_path):
  _fails(_folder(tmp_path, test_y=_with('test_y', 23, 10)), 'test_y.npy', 'row 23 has label 10, outside [0, 10)')
  _fails(_folder(tmp_path, test_x=_with('test_x', (11, 2), np.nan)), 'test_x.npy', 'row 11 holds a non-finite')


def test_regression_targets_may_be_float_but_must_be_finite(tmp_path):
  y = _arrays()['y'].astype(np.float32) * 0.5
  loaded = datasets.load_dataset('federated_npy', data_dir=_folder(tmp_path, num_classes=1, y=y,
                                                                   test_y=np.zeros(30, np.float32)))
  assert loaded.train.y.dtype == np.float32
  y[1, 2] = np.inf
  _fails(_folder(tmp_path, num_classes=1, y=y, test_y=np.zeros(30, np.float32)), 'client 1 row 2 has target inf')


def test_validate_false_skips_the_scan_but_not_the_shapes(tmp_path):
  folder = _folder(tmp_path, y=_with('y', (3, 17), 12))
  loaded = datasets.load_dataset('federated_npy', data_dir=folder, validate=False)
  assert loaded.train.y[3, 17] == 12
  _fails(_folder(tmp_path, input_shape=(4,)), 'input_shape [4]', validate=False)


@pytest.mark.parametrize('mmap', [True, False])
def test_truncated_npy_names_the_file(tmp_path, mmap):
  folder = _folder(tmp_path)
  path = os.path.join(folder, 'train', 'x.npy')
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.truncate(size - 100)
  _fails(folder, path, 'cannot be read as a .npy array', 'truncated', mmap=mmap)


def test_truncated_test_npy_names_the_file(tmp_path):
  folder = _folder(tmp_path)
  path = os.path.join(folder, 'test_y.npy')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 8)
  _fails(folder, path, 'truncated')


def test_broken_dataset_json_names_the_file(tmp_path):
  folder = _folder(tmp_path)
  path = os.path.join(folder, host.DATASET_JSON)
  text = open(path).read()
  with open(path, 'w') as f:
    f.write(text[: len(text) // 2])
  _fails(folder, path, 'not valid JSON', 'line')
  with open(path, 'w') as f:
    json.dump({'name': 'tiny', 'input_shape': [3]}, f)
  _fails(folder, path, "lacks the key(s) ['num_classes']")
  with open(path, 'w') as f:
    json.dump({'name': 'tiny', 'input_shape': [3], 'num_classes': 2.5}, f)
  _fails(folder, path, 'num_classes=2.5')


def test_broken_federated_json_names_the_file(tmp_path):
  folder = _folder(tmp_path)
  path = os.path.join(folder, 'train', host.FEDERATED_JSON)
  with open(path, 'w') as f:
    f.write('{"format": 1, "arrays": {"x": ')
  _fails(folder, path, 'not valid JSON')


def test_the_chunked_scan_finds_the_same_first_row_at_any_chunk_size():
  a = _arrays()
  a['x'][2, 3, 0] = np.nan
  a['x'][4, 1, 2] = np.inf
  a['test_y'][25] = 99
  messages = set()
  for chunk_bytes in (1, M * D * 4 + 1, 3 * M * D * 4, validate.CHUNK_BYTES):
    with pytest.raises(ValueError) as info:
      validate.validate_federated_arrays(a['x'], a['y'], a['num_examples'], CLASSES, (D,), a['test_x'], a['test_y'],
                                         chunk_bytes=chunk_bytes)
    messages.add(str(info.value))
  assert len(messages) == 1 and 'client 2 row 3' in messages.pop()
  a['x'][2, 3, 0] = a['x'][4, 1, 2] = 0.0
  a['test_x'][17, 1] = np.nan
  for chunk_bytes in (1, 5 * D * 4, validate.CHUNK_BYTES):  # test rows keep their index across chunks
    with pytest.raises(ValueError, match=r'test_x.*row 17 holds a non-finite'):
      validate.validate_federated_arrays(a['x'], a['y'], a['num_examples'], CLASSES, (D,), a['test_x'], a['test_y'],
                                         chunk_bytes=chunk_bytes)


_CONFIG = '''
import ml_collections
from configs import femnist_synthetic_host


def get_config():
  """The host-data smoke run, reading a federated_npy folder instead of the generated stand-in."""
  config = femnist_synthetic_host.get_config('smoke')
  config.data = ml_collections.ConfigDict({'name': 'federated_npy',
                                           'data_dir': ml_collections.config_dict.placeholder(str)})
  return config
'''


def test_the_user_sees_the_file_client_and_row_from_experiments_run(tmp_path):
  folder = _folder(tmp_path, y=_with('y', (3, 17), 12))
  config_path = tmp_path / 'tiny_federated_npy.py'
  config_path.write_text(textwrap.dedent(_CONFIG))
  workdir = tmp_path / 'run'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  done = subprocess.run([sys.executable, '-m', 'experiments.run', f'--config={config_path}',
                         f'--config.data.data_dir={folder}', f'--workdir={workdir}'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
  assert done.returncode != 0
  y_path = os.path.join(folder, 'train', 'y.npy')
  assert re.search(rf"ValueError: '{re.escape(y_path)}': client 3 row 17 has label 12, outside \[0, 10\)",
                   done.stderr), done.stderr[-3000:]
  assert not os.path.exists(workdir / 'config.json')  # refused before the run wrote anything
