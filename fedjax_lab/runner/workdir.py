"""A workdir belongs to one config and one process: its fingerprint, its lock, `--overwrite`.

`check(config, workdir)` reads (never writes) what a workdir already holds and decides what a run
may do there:
  - a new or empty workdir: start at round 0;
  - the same config (up to `IGNORED_FIELDS`, which do not change results, and `rounds`): resume from
    the latest checkpoint; `rounds` above the rounds already trained continues training, below them
    is refused, equal to them on a finished run means the run is already complete;
  - any other config: refused with every differing field listed (`path: old -> new`), before a file
    is touched.

`lock(workdir)` makes the workdir one process's: an exclusive `fcntl.flock` on `workdir/.lock`,
held for the run's life. The kernel drops it when the process dies (even by SIGKILL), so a stale
lock never blocks the next start; the holder's pid is written into the file for the error message.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
from typing import Any, NamedTuple

# Fields that change how a run is watched or saved, never its numbers: a rerun may change them.
IGNORED_FIELDS = ('progress', 'checkpoint_every', 'prefetch_depth', 'max_empty_round_fraction')
CONFIG_FILE = 'config.json'
FINGERPRINT_FILE = 'fingerprint.json'
LOCK_FILE = '.lock'
CHECKPOINT_DIR = 'checkpoints'
SUMMARY_FILE = 'summary.json'


class WorkdirConfigError(ValueError):
  """The workdir holds a run of another config (or more rounds than asked for)."""


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir's lock."""


class Plan(NamedTuple):
  """What a run may do in a workdir (from `check`).

  stored_config: the config the workdir was made with (None: a new workdir).
  trained_rounds: the newest checkpoint's round (0: none).
  complete: the workdir holds the finished run of exactly `config.rounds` rounds.
  """
  stored_config: dict | None
  trained_rounds: int
  complete: bool


def canonical(config) -> dict:
  """The config as plain JSON data (tuples -> lists, sorted keys): what config.json holds."""
  config = config.to_dict() if hasattr(config, 'to_dict') else config
  return json.loads(json.dumps(config, sort_keys=True, default=str))


def _results_fields(config: dict) -> dict:
  return {k: v for k, v in config.items() if k not in IGNORED_FIELDS and k != 'rounds'}


def fingerprint(config) -> str:
  """sha256 of the canonical config minus the fields that do not change results and `rounds`."""
  payload = json.dumps(_results_fields(canonical(config)), sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out: dict[str, Any] = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}.{key}' if prefix else key))
    return out
  return {prefix: tree}


def _same(a: Any, b: Any) -> bool:
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN == NaN, 1 != 1.0 is fine


def config_diff(old: dict, new: dict) -> list[str]:
  """The fields that differ between two canonical configs, as 'path: old -> new' (IGNORED_FIELDS and rounds skipped)."""
  old_flat, new_flat = _flatten(_results_fields(old)), _flatten(_results_fields(new))
  missing = object()
  lines = []
  for path in sorted(set(old_flat) | set(new_flat)):
    a, b = old_flat.get(path, missing), new_flat.get(path, missing)
    if a is missing or b is missing or not _same(a, b):
      show = lambda v: '(absent)' if v is missing else json.dumps(v)
      lines.append(f'{path}: {show(a)} -> {show(b)}')
  return lines


def checkpoint_rounds(workdir: str) -> list[int]:
  """Rounds of the checkpoints on disk (orbax step folders), oldest first; damaged ones included."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise WorkdirConfigError(f'{path} is damaged ({error}); the workdir cannot be checked against the config. '
                             'Pass --overwrite (overwrite=True) to start afresh, or use a new workdir.') from error


def check(config, workdir: str) -> Plan:
  """Decides what a run of `config` may do in `workdir`, reading files only.

  Raises:
    WorkdirConfigError: the workdir holds another config, or more rounds than config.rounds.
  """
  new = canonical(config)
  stored = _read_json(os.path.join(workdir, CONFIG_FILE))
  trained = max(checkpoint_rounds(workdir), default=0)
  if stored is None:
    if trained:
      raise WorkdirConfigError(
          f'{workdir} holds checkpoints (up to round {trained}) but no {CONFIG_FILE}, so nothing says which config '
          'made them. Pass --overwrite (overwrite=True) to start afresh, or use a new workdir.')
    return Plan(None, 0, False)
  diff = config_diff(stored, new)
  if diff:
    raise WorkdirConfigError(
        f'{workdir} holds a run of another config; refusing to mix them (nothing was written). Differing fields '
        '(stored -> this run):\n  ' + '\n  '.join(diff) + '\nUse a new --workdir, or pass --overwrite '
        '(overwrite=True) to delete this one and start afresh.')
  rounds = new['rounds']
  if trained > rounds:
    raise WorkdirConfigError(
        f'config.rounds={rounds} is below the {trained} rounds {workdir} has already trained; a finished run '
        f'cannot be shortened. Use config.rounds >= {trained}, a new --workdir, or --overwrite.')
  if rounds != stored.get('rounds') and trained and _rounds_shape_results(new):
    raise WorkdirConfigError(
        f'config.rounds={rounds} differs from the stored {stored.get("rounds")}, and config.dp.target_epsilon '
        'calibrates the noise to config.rounds, so the rounds already trained used another noise level. Use a new '
        '--workdir or --overwrite.')
  complete = trained == rounds and os.path.exists(os.path.join(workdir, SUMMARY_FILE))
  return Plan(stored, trained, complete)


def _rounds_shape_results(config: dict) -> bool:
  """Whether config.rounds enters the numbers (DP noise calibrated to a target epsilon over the run)."""
  dp = config.get('dp') or {}
  target = dp.get('target_epsilon')
  return dp.get('name', 'none') != 'none' and target is not None and not (
      isinstance(target, float) and math.isnan(target))


def write_config(config, workdir: str) -> None:
  """Writes config.json and fingerprint.json atomically (a temp file, then os.replace)."""
  _write_atomic(os.path.join(workdir, CONFIG_FILE), canonical(config))
  _write_atomic(os.path.join(workdir, FINGERPRINT_FILE),
                {'sha256': fingerprint(config), 'ignored_fields': list(IGNORED_FIELDS) + ['rounds']})


def _write_atomic(path: str, payload: Any) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class Lock:
  """An exclusive lock on `workdir/.lock` (fcntl.flock); released by `release()` or the process's death."""

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      holder = _read_pid(fd)
      os.close(fd)
      if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise WorkdirLockedError(
          f'{os.path.abspath(workdir)} is in use by another run (pid {holder or "unknown"}, lock {self.path}). '
          'Wait for it to finish, stop it, or use another --workdir.') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # the file stays (removing it would race a waiting process's open)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
    finally:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> 'Lock':
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _read_pid(fd: int) -> int | None:
  try:
    text = os.pread(fd, 32, 0).decode().strip()
    return int(text) if text else None
  except (OSError, ValueError):
    return None


def wipe(workdir: str) -> None:
  """Deletes everything in `workdir` except the lock file (call it holding the lock)."""
  for name in os.listdir(workdir):
    if name == LOCK_FILE:
      continue
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def validate_run_fields(config) -> None:
  """checkpoint_every and max_empty_round_fraction (read by the runner), before anything compiles."""
  every = config.get('checkpoint_every', None)
  if every is not None and (isinstance(every, bool) or int(every) != every or every < 1):
    raise ValueError(f'config.checkpoint_every={every} must be an integer >= 1 (rounds between checkpoints; '
                     'the last round is always checkpointed).')
  fraction = config.get('max_empty_round_fraction', None)
  if fraction is not None and not 0.0 <= fraction <= 1.0:
    raise ValueError(f'config.max_empty_round_fraction={fraction} must be in [0, 1] (the share of rounds with no '
                     'participant above which the run warns).')
