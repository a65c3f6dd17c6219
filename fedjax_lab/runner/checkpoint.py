"""Checkpoints of the run state with orbax: save every k rounds, resume from the newest one that restores.

A checkpoint holds two items: 'state' (the algorithm's state pytree, orbax StandardSave) and 'totals'
(the run's cumulative counters as JSON: bytes_up/bytes_down totals, empty rounds), so a resumed run
continues them even when metrics.jsonl is lost.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp


class NoRestorableCheckpointError(RuntimeError):
  """Every checkpoint in the folder failed to restore."""


def _without_empty(tree: Any) -> Any:
  # orbax refuses zero-size arrays (e.g. top-k without error feedback keeps an empty residual); they
  # carry nothing, so they are left out of the checkpoint and taken from `like` on restore.
  return jax.tree.map(lambda a: None if getattr(a, 'size', 1) == 0 else a, tree)


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of a state pytree under `directory`, by round."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(self.directory,
                                 options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True))

  def latest_round(self) -> int | None:
    return self._manager.latest_step()

  def all_rounds(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, round_index: int, state: Any, totals: dict | None = None) -> None:
    self._manager.save(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_without_empty(state)), totals=ocp.args.JsonSave(dict(totals or {}))))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, like: Any) -> tuple[Any, dict]:
    """(state, totals) of one checkpoint, in the structure, shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _without_empty(like))
    restored = self._manager.restore(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), totals=ocp.args.JsonRestore()))
    state = jax.tree.map(lambda empty, saved: empty if saved is None else saved, like, restored['state'])
    return state, dict(restored['totals'] or {})

  def restore_latest(self, like: Any, prefer_at_most: int | None = None) -> tuple[int | None, Any, dict]:
    """(round, state, totals) of the newest checkpoint that restores; (None, like, {}) when there is none.

    A checkpoint that fails (truncated data, empty or corrupt metadata, another state structure) is
    logged and moved aside to `<directory>.damaged/<round>-<time>`, so the round can be saved again;
    the next older one is tried.

    Args:
      like: a state of the run's structure, shapes, dtypes and shardings.
      prefer_at_most: try the checkpoints of rounds <= this first (the last round metrics.jsonl holds
        a row for, so no row goes missing); newer ones are deleted if one of those restores (the
        rounds after it are recomputed, with the same numbers).

    Raises:
      NoRestorableCheckpointError: checkpoints exist but none restores.
    """
    rounds = self.all_rounds()
    if prefer_at_most is not None and any(r <= prefer_at_most for r in rounds):
      order = [r for r in reversed(rounds) if r <= prefer_at_most] + [r for r in reversed(rounds) if r > prefer_at_most]
    else:
      order = list(reversed(rounds))
    failures, damaged = [], []
    for round_index in order:
      try:
        state, totals = self.restore(round_index, like)
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        summary = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        path = os.path.join(self.directory, str(round_index))
        logging.warning('Checkpoint %s does not restore (%s: %s); trying the previous one.', path,
                        type(error).__name__, summary)
        failures.append(f'{path}: {type(error).__name__}: {summary}')
        damaged.append(round_index)
        continue
      newer = [r for r in rounds if r > round_index]
      if newer:
        self._set_aside([r for r in newer if r in damaged], [r for r in newer if r not in damaged])
      return round_index, state, totals
    if failures:
      raise NoRestorableCheckpointError(
          f'No checkpoint in {self.directory} restores:\n  ' + '\n  '.join(failures) +
          '\nIf the config changed the state\'s shapes, use a new --workdir; otherwise pass --overwrite '
          '(overwrite=True) to start afresh.')
    return None, like, {}

  def _set_aside(self, damaged: list[int], superseded: list[int]) -> None:
    """Moves damaged checkpoints to `<directory>.damaged/`, deletes superseded ones (recomputed)."""
    self._manager.close()
    for round_index in damaged:
      aside = self.directory + '.damaged'
      os.makedirs(aside, exist_ok=True)
      target = os.path.join(aside, f'{round_index}-{int(time.time())}')
      shutil.move(os.path.join(self.directory, str(round_index)), target)
      logging.warning('Moved the damaged checkpoint of round %d to %s.', round_index, target)
    for round_index in superseded:
      shutil.rmtree(os.path.join(self.directory, str(round_index)))
      logging.warning('Resuming before round %d (metrics.jsonl has no row for it): its checkpoint is deleted and '
                      'the round recomputed.', round_index)
    self._manager = self._open()

  def close(self) -> None:
    self._manager.close()
