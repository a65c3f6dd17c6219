"""Checks federated data read from files before anything trains on it.

A folder of .npy files can hold what no code path would produce: labels outside [0, num_classes),
counts larger than the padded size, NaN pixels, raw uint8 images. None of these fails on its own;
they train on padding, crash in flax at the first step, or diverge and blame the learning rate. So
every file-backed loader (`host.load_saved_dataset`: registry names 'federated_npy' and
'femnist_synthetic') calls `validate_federated_arrays` once at load, and each error names the file
and the first offending client and row.

Rules (the same for training clients and the test split):
  features      floating dtype and finite on every row, padding included (padding rows are masked
                but still computed, and NaN * 0 is NaN). Integer features (e.g. uint8 images) are
                refused rather than converted: converting without rescaling is what makes runs on
                0..255 pixels diverge, and rescaling would be a guess; the message gives the fix.
  labels        integer dtype, in [0, num_classes) on every row (a label past the last class makes
                the cross entropy NaN even on a masked padding row). With num_classes = 1 float
                targets are allowed (regression) and must be finite.
  num_examples  integer dtype, each in [0, M] where M is the padded rows per client.
  shapes        x [K, M, *input_shape], y [K, M], num_examples [K], test_x [N, *input_shape],
                test_y [N], with input_shape from dataset.json.

Memory-mapped files are scanned in chunks of clients (`chunk_bytes` of features at a time), so
memory stays bounded whatever the file size; the scan reads each file once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator, Sequence

import numpy as np
from absl import logging

CHUNK_BYTES = 64 << 20  # features read per step of the scan


# ---------------------------------------------------------------------------------------------
# Reading files with errors that name them.


def _sentence(text: str) -> str:
  """`text` as a sentence of its own (the callers' hints are written to follow a semicolon)."""
  return text[:1].upper() + text[1:]


def read_json(path: str, required: Sequence[str], how: str) -> dict[str, Any]:
  """Parses a JSON object from `path`; ValueError naming the file if it is broken or lacks `required` keys."""
  try:
    with open(path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path!r} is not valid JSON ({e.msg}: line {e.lineno}, column {e.colno}); '
                     f'it was probably cut short by an interrupted write. {_sentence(how)}') from e
  except UnicodeDecodeError as e:
    raise ValueError(f'{path!r} is not a text (JSON) file ({e}). {_sentence(how)}') from e
  if not isinstance(meta, dict):
    raise ValueError(f'{path!r} holds a JSON {type(meta).__name__}, not an object with keys {list(required)}. '
                     f'{_sentence(how)}')
  missing = [key for key in required if key not in meta]
  if missing:
    raise ValueError(f'{path!r} lacks the key(s) {missing} (it has {sorted(meta)}). {_sentence(how)}')
  return meta


def load_npy(path: str, mmap: bool, how: str) -> np.ndarray:
  """np.load(path) (memory-mapped read-only if `mmap`); ValueError naming the file if it cannot be read.

  A truncated file makes numpy raise about sizes ("cannot reshape array of size ...", "mmap length is
  greater than file size") without saying which file; this says which, and why that happens.
  """
  try:
    return np.load(path, mmap_mode='r' if mmap else None, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    raise ValueError(f'{path!r} ({size} bytes) cannot be read as a .npy array: {e}. The file is truncated '
                     f'(an interrupted copy or write) or was not written by np.save. {_sentence(how)}') from e


def dataset_meta(path: str, how: str) -> tuple[str, tuple[int, ...], int]:
  """(name, input_shape, num_classes) from a dataset.json, each checked; ValueError naming the file."""
  meta = read_json(path, ('name', 'input_shape', 'num_classes'), how)
  shape, classes = meta['input_shape'], meta['num_classes']
  if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                            for d in shape):
    raise ValueError(f'{path!r}: input_shape={shape!r} must be a list of positive integers (one example\'s '
                     f'shape, e.g. [28, 28]). {_sentence(how)}')
  if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
    raise ValueError(f'{path!r}: num_classes={classes!r} must be an integer >= 1 (1 for regression). {_sentence(how)}')
  return str(meta['name']), tuple(shape), classes


# ---------------------------------------------------------------------------------------------
# Contents.


def _client_chunks(num_clients: int, bytes_per_client: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
  step = max(1, chunk_bytes // max(bytes_per_client, 1))
  for start in range(0, num_clients, step):
    yield start, min(start + step, num_clients)


def _row_note(client: int | None, row: int, num_examples: np.ndarray | None) -> str:
  """Where a bad row is: 'client 3 row 17' (with a padding remark past num_examples) or 'row 17' (test)."""
  if client is None:
    return f'row {row}'
  where = f'client {client} row {row}'
  if num_examples is not None and row >= int(num_examples[client]):
    where += (f' (a padding row, past num_examples[{client}]={int(num_examples[client])}: padding rows are '
              'masked but still computed, so they must hold valid values too; zeros are usual)')
  return where


def _first(bad: np.ndarray) -> tuple[int, ...]:
  return tuple(int(i) for i in np.argwhere(bad)[0])


def _locate(index: tuple[int, ...], offset: int, per_client: bool) -> tuple[int | None, int]:
  """(client, row) of `index` in a block that starts at client (or test row) `offset`."""
  return (offset + index[0], index[1]) if per_client else (None, offset + index[0])


def _check_features(block: np.ndarray, path: str, offset: int, per_client: bool, num_examples: np.ndarray | None,
                    how: str) -> None:
  """block [k, M, ...] of clients offset.. (per_client) or [n, ...] of test rows offset..: every value finite."""
  if block.size == 0:
    return
  low, high = block.min(), block.max()  # min/max propagate NaN and show Inf: a scan without temporaries
  if np.isfinite(low) and np.isfinite(high):
    return
  lead = 2 if per_client else 1
  block = np.asarray(block)
  finite = np.isfinite(block.reshape(block.shape[:lead] + (-1,)))
  index = _first(~finite.all(-1))
  value = block[index].reshape(-1)[np.argmin(finite[index])]
  client, row = _locate(index, offset, per_client)
  raise ValueError(f'{path!r}: {_row_note(client, row, num_examples)} holds a non-finite feature ({value}). '
                   f'Fix or drop that example and rewrite the file.{how}')


def _check_labels(block: np.ndarray, path: str, num_classes: int, offset: int, per_client: bool,
                  num_examples: np.ndarray | None, meta_path: str, how: str) -> None:
  """block [k, M] of clients offset.. (per_client) or [n] of test rows offset..: integer labels in
  [0, num_classes), or finite float targets (regression; the caller allows those only for num_classes 1)."""
  if block.size == 0:
    return
  low, high = block.min(), block.max()
  if np.issubdtype(block.dtype, np.floating):
    if np.isfinite(low) and np.isfinite(high):
      return
    block = np.asarray(block)
    index = _first(~np.isfinite(block))
    client, row = _locate(index, offset, per_client)
    raise ValueError(f'{path!r}: {_row_note(client, row, num_examples)} has target {block[index]}, not finite. '
                     f'Fix or drop that example and rewrite the file.{how}')
  if low >= 0 and high < num_classes:
    return
  block = np.asarray(block)
  index = _first((block < 0) | (block >= num_classes))
  client, row = _locate(index, offset, per_client)
  raise ValueError(f'{path!r}: {_row_note(client, row, num_examples)} has label {block[index]}, outside '
                   f'[0, {num_classes}) (num_classes={num_classes} in {meta_path!r}). Fix the label, or '
                   f'num_classes if the data set has more classes.{how}')


def _check_dtypes(features: np.ndarray, labels: np.ndarray, x_path: str, y_path: str, num_classes: int,
                  how: str) -> None:
  if not np.issubdtype(features.dtype, np.floating):
    raise ValueError(f'{x_path!r} holds {features.dtype} features; fedjax_lab trains on floating-point features '
                     f'and does not guess a scale. Save x.astype(np.float32) (divided by 255 for 8-bit images, '
                     f'as the built-in image loaders do).{how}')
  if np.issubdtype(labels.dtype, np.floating) and num_classes == 1:
    return  # regression targets
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{y_path!r} holds {labels.dtype} labels; class labels must be integers (save '
                     f'y.astype(np.int32)); float targets are only for regression (num_classes=1).{how}')


def validate_federated_arrays(
    x: np.ndarray,
    y: np.ndarray,
    num_examples: np.ndarray,
    num_classes: int,
    input_shape: Sequence[int],
    test_x: np.ndarray | None = None,
    test_y: np.ndarray | None = None,
    paths: dict[str, str] | None = None,
    contents: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    how: str = '',
) -> None:
  """Raises ValueError at the first thing in a federated data set that training cannot use.

  Shapes and dtypes are always checked (free); `contents=True` also scans the values (see the module
  docstring), `chunk_bytes` of features at a time, so memory-mapped files are read once in bounded
  memory.

  Args:
    x: [K, M, *input_shape] features (numpy or np.memmap).
    y: [K, M] labels (integer) or regression targets (float, num_classes 1).
    num_examples: [K] real rows per client.
    num_classes: classes (dataset.json); 1 for regression.
    input_shape: one example's shape (dataset.json).
    test_x: optional [N, *input_shape] test features.
    test_y: optional [N] test labels (required with test_x).
    paths: file of each array for the messages: keys 'x', 'y', 'num_examples', 'test_x', 'test_y' and
      'meta' (the dataset.json); a missing key reads as the array's name.
    contents: scan the values, not only shapes and dtypes.
    chunk_bytes: bytes of features read per step of the scan.
    how: a sentence appended to every message (what to do about it).

  Raises:
    ValueError: naming the file, and the first offending client and row (or test row).
  """
  how = f' {_sentence(how)}' if how else ''
  paths = dict(paths or {})
  name = lambda key: paths.get(key, key)
  meta = name('meta')
  input_shape = tuple(int(d) for d in input_shape)
  if x.ndim < 2:
    raise ValueError(f'{name("x")!r} has shape {x.shape}; it must be [clients K, rows M, *input_shape].{how}')
  num_clients, max_examples = x.shape[:2]
  if tuple(x.shape[2:]) != input_shape:
    raise ValueError(f'{name("x")!r} holds examples of shape {tuple(x.shape[2:])} but {meta!r} says input_shape '
                     f'{list(input_shape)}; the model is built from input_shape, so they must agree.{how}')
  if tuple(y.shape) != (num_clients, max_examples):
    raise ValueError(f'{name("y")!r} has shape {tuple(y.shape)} but {name("x")!r} has {num_clients} clients x '
                     f'{max_examples} rows; y must be [{num_clients}, {max_examples}].{how}')
  if tuple(num_examples.shape) != (num_clients,):
    raise ValueError(f'{name("num_examples")!r} has shape {tuple(num_examples.shape)}; it must be '
                     f'[{num_clients}], one count per client of {name("x")!r}.{how}')
  _check_dtypes(x, y, name('x'), name('y'), num_classes, how)
  if not np.issubdtype(num_examples.dtype, np.integer):
    raise ValueError(f'{name("num_examples")!r} holds {num_examples.dtype} counts; they must be integers (save '
                     f'num_examples.astype(np.int32)).{how}')
  if test_x is not None or test_y is not None:
    if test_x is None or test_y is None:
      raise ValueError(f'A test split needs both {name("test_x")!r} and {name("test_y")!r}.{how}')
    if tuple(test_x.shape[1:]) != input_shape:
      raise ValueError(f'{name("test_x")!r} holds examples of shape {tuple(test_x.shape[1:])} but {meta!r} says '
                       f'input_shape {list(input_shape)}.{how}')
    if test_y.ndim != 1 or test_y.shape[0] != test_x.shape[0]:
      raise ValueError(f'{name("test_x")!r} holds {test_x.shape[0]} examples but {name("test_y")!r} has shape '
                       f'{tuple(test_y.shape)}; it must be [{test_x.shape[0]}], one label per example.{how}')
    _check_dtypes(test_x, test_y, name('test_x'), name('test_y'), num_classes, how)

  counts = np.asarray(num_examples)
  bad = (counts < 0) | (counts > max_examples)
  if bad.any():
    client = int(np.argmax(bad))
    raise ValueError(f'{name("num_examples")!r}: client {client} has num_examples {int(counts[client])}, outside '
                     f'[0, {max_examples}] (M = {max_examples} rows per client in {name("x")!r}).{how}')
  if not contents:
    return

  start_time = time.perf_counter()
  bytes_per_client = max(1, x[:1].nbytes + y[:1].nbytes)
  for start, stop in _client_chunks(num_clients, bytes_per_client, chunk_bytes):
    _check_features(x[start:stop], name('x'), start, True, counts, how)
    _check_labels(y[start:stop], name('y'), num_classes, start, True, counts, meta, how)
  if test_x is not None:
    bytes_per_row = max(1, test_x[:1].nbytes)
    for start, stop in _client_chunks(test_x.shape[0], bytes_per_row, chunk_bytes):
      _check_features(test_x[start:stop], name('test_x'), start, False, None, how)
    _check_labels(test_y, name('test_y'), num_classes, 0, False, None, meta, how)
  seconds = time.perf_counter() - start_time
  total = x.nbytes + y.nbytes + (0 if test_x is None else test_x.nbytes + test_y.nbytes)
  logging.info('Validated %s: %.1f MB of data in %.2f s (%d clients x %d rows).', os.path.dirname(name('x'))
               or name('x'), total / 2**20, seconds, num_clients, max_examples)
