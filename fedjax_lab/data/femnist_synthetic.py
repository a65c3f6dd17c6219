"""A FEMNIST-sized synthetic stand-in, generated procedurally and written chunk by chunk to memmaps.

Federated EMNIST has 3,400 writers with ~226 handwritten 28x28 characters each (62 classes). This
generator mimics its shape and its kind of heterogeneity without any download:

  class prototypes  each of the 62 classes is 3 random quadratic strokes rendered with a Gaussian
                    pen (seeded by `seed` only, shared by all writers);
  writers           client k draws an affine "handwriting" distortion (rotation, scale, shear,
                    shift), an ink gamma (thin/bold), an ink intensity and a label distribution
                    Dirichlet(label_concentration * p) around FEMNIST-like class frequencies (digits
                    4x as frequent as each letter);
  examples          the writer's glyph of the label, shifted by up to one pixel, plus N(0, 0.1^2)
                    pixel noise, clipped to [0, 1];
  sizes             clip(LogNormal) with mean ~ mean_examples and coefficient of variation ~0.4,
                    in [max(1, mean/8), 2 * mean]; every client is padded to 2 * mean_examples.

Each client's draws come from `default_rng([seed, 11, k])`, so the data do not depend on the
chunk size. The full size (3,400 x 440 x 784 float32) is ~4.7 GB on disk and is never held in RAM:
chunks of `chunk_clients` clients are written into `np.lib.format.open_memmap` files in a temporary
folder that is renamed into place when complete (a crashed run leaves no half data set behind).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from fedjax_lab.data import host

NUM_CLASSES = 62
IMAGE_SIZE = 28
VERSION = 1  # bump when the generator changes, so old caches are not reused


def class_frequencies() -> np.ndarray:
  """[62] FEMNIST-like class frequencies: digits (0-9) 4x as frequent as each letter."""
  weights = np.concatenate([np.full(10, 4.0), np.ones(NUM_CLASSES - 10)])
  return weights / weights.sum()


def class_prototypes(seed: int, strokes: int = 3, pen_width: float = 1.2) -> np.ndarray:
  """[62, 28, 28] float32 in [0, 1]: each class drawn as `strokes` random quadratic Bezier strokes."""
  rng = np.random.default_rng([int(seed), 10])
  control = rng.uniform(5.0, 22.0, size=(NUM_CLASSES, strokes, 3, 2))
  t = np.linspace(0.0, 1.0, 24)[:, None]
  # Quadratic Bezier: (1-t)^2 P0 + 2 t (1-t) P1 + t^2 P2, sampled at 24 points per stroke.
  points = ((1 - t) ** 2 * control[:, :, None, 0] + 2 * t * (1 - t) * control[:, :, None, 1]
            + t ** 2 * control[:, :, None, 2]).reshape(NUM_CLASSES, -1, 2)
  grid = np.stack(np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing='ij'), -1).reshape(-1, 2)
  dist2 = ((grid[None, :, None, :] - points[:, None, :, :]) ** 2).sum(-1)
  ink = np.exp(-dist2 / (2 * pen_width ** 2)).max(-1)
  return (ink / ink.max(axis=1, keepdims=True)).reshape(NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE).astype(np.float32)


def client_sizes(num_clients: int, mean_examples: int, seed: int, cv: float = 0.4) -> np.ndarray:
  """[K] int32 training examples per client: clipped LogNormal with mean ~ mean_examples."""
  rng = np.random.default_rng([int(seed), 12])
  sigma = np.sqrt(np.log1p(cv ** 2))
  sizes = np.round(rng.lognormal(np.log(mean_examples) - sigma ** 2 / 2, sigma, num_clients))
  return np.clip(sizes, max(1, mean_examples // 8), 2 * mean_examples).astype(np.int32)


def _warp(prototypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """[62, 28, 28]: the prototypes under one writer's random affine map (bilinear sampling)."""
  angle = rng.normal(0.0, 0.15)
  scale = 1.0 + rng.normal(0.0, 0.08, 2)
  shear = rng.normal(0.0, 0.15)
  shift = rng.normal(0.0, 1.0, 2)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  inverse = np.linalg.inv(rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale))
  center = (IMAGE_SIZE - 1) / 2
  grid = np.stack(np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing='ij'), -1).reshape(-1, 2)
  source = (grid - center - shift) @ inverse.T + center
  low = np.floor(source).astype(np.int64)
  frac = source - low
  out = np.zeros((NUM_CLASSES, IMAGE_SIZE * IMAGE_SIZE), np.float32)
  for dy in (0, 1):
    for dx in (0, 1):
      r, c = low[:, 0] + dy, low[:, 1] + dx
      inside = (r >= 0) & (r < IMAGE_SIZE) & (c >= 0) & (c < IMAGE_SIZE)
      weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1]) * inside
      out += weight.astype(np.float32) * prototypes[:, np.clip(r, 0, IMAGE_SIZE - 1), np.clip(c, 0, IMAGE_SIZE - 1)]
  return out.reshape(NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE)


def client_examples(prototypes: np.ndarray, client: int, num_examples: int, seed: int,
                    label_concentration: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
  """One writer's examples: x [n, 28, 28] float32 in [0, 1], y [n] int32 (deterministic per client)."""
  rng = np.random.default_rng([int(seed), 11, int(client)])
  glyphs = _warp(prototypes, rng)
  glyphs = np.clip(glyphs, 0.0, 1.0) ** np.float32(np.exp(rng.normal(0.0, 0.3))) * np.float32(rng.uniform(0.7, 1.0))
  probs = rng.dirichlet(label_concentration * class_frequencies())
  labels = rng.choice(NUM_CLASSES, num_examples, p=probs).astype(np.int32)
  padded = np.pad(glyphs, ((0, 0), (1, 1), (1, 1)))
  offset = rng.integers(0, 3, size=(num_examples, 2))
  rows = offset[:, 0, None, None] + np.arange(IMAGE_SIZE)[None, :, None]
  cols = offset[:, 1, None, None] + np.arange(IMAGE_SIZE)[None, None, :]
  x = padded[labels[:, None, None], rows, cols]
  x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.1)
  return np.clip(x, 0.0, 1.0, out=x), labels


def generate(directory: str, num_clients: int, mean_examples: int, seed: int, test_examples: int,
             chunk_clients: int = 64) -> None:
  """Writes the data set into `directory` in the `host.save_dataset` layout, chunk by chunk.

  Memory stays at one chunk of clients ([chunk_clients, 2 * mean_examples, 28, 28] float32) plus
  the test split. The folder appears only when complete (written under a temporary name, renamed).
  """
  sizes = client_sizes(num_clients, mean_examples, seed)
  # The test split: `test_examples` more examples of the same writers, spread in proportion to size.
  test_sizes = np.random.default_rng([int(seed), 13]).multinomial(test_examples, sizes / sizes.sum())
  prototypes = class_prototypes(seed)
  max_examples = 2 * mean_examples
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tmp-' + os.path.basename(directory), dir=parent)
  try:
    train_dir = os.path.join(tmp, 'train')
    os.makedirs(train_dir)
    shape = (num_clients, max_examples, IMAGE_SIZE, IMAGE_SIZE)
    x = np.lib.format.open_memmap(os.path.join(train_dir, 'x.npy'), 'w+', np.float32, shape)
    y = np.lib.format.open_memmap(os.path.join(train_dir, 'y.npy'), 'w+', np.int32, shape[:2])
    test_x = np.zeros((test_examples, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    test_y = np.zeros((test_examples,), np.int32)
    test_start = 0
    for start in range(0, num_clients, chunk_clients):
      stop = min(start + chunk_clients, num_clients)
      chunk_x = np.zeros((stop - start,) + shape[1:], np.float32)
      chunk_y = np.zeros((stop - start, max_examples), np.int32)
      for k in range(start, stop):
        n, t = int(sizes[k]), int(test_sizes[k])
        xs, ys = client_examples(prototypes, k, n + t, seed)
        chunk_x[k - start, :n], chunk_y[k - start, :n] = xs[:n], ys[:n]
        test_x[test_start:test_start + t], test_y[test_start:test_start + t] = xs[n:], ys[n:]
        test_start += t
      x[start:stop], y[start:stop] = chunk_x, chunk_y  # one sequential write per chunk
    x.flush()
    y.flush()
    del x, y
    np.save(os.path.join(train_dir, 'num_examples.npy'), sizes)
    host.write_federated_json(train_dir, {
        'x': {'shape': list(shape), 'dtype': np.dtype(np.float32).str},
        'y': {'shape': list(shape[:2]), 'dtype': np.dtype(np.int32).str},
        'num_examples': {'shape': [num_clients], 'dtype': sizes.dtype.str}})
    np.save(os.path.join(tmp, 'test_x.npy'), test_x)
    np.save(os.path.join(tmp, 'test_y.npy'), test_y)
    host.write_dataset_json(tmp, 'femnist_synthetic', (IMAGE_SIZE, IMAGE_SIZE), NUM_CLASSES)
    try:
      os.rename(tmp, directory)
    except OSError:
      if not os.path.isfile(os.path.join(directory, host.DATASET_JSON)):  # not a concurrent writer's result
        raise
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


def cache_folder(cache_dir: str, num_clients: int, mean_examples: int, seed: int, test_examples: int) -> str:
  return os.path.join(os.path.expanduser(cache_dir), 'femnist_synthetic',
                      f'v{VERSION}_K{num_clients}_n{mean_examples}_t{test_examples}_seed{seed}')
