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
        state=ocp.args.StandardSave(state), totals=ocp.args.JsonSave(dict(totals or {}))))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, like: Any) -> tuple[Any, dict]:
    """(state, totals) of one checkpoint, in the structure, shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), totals=ocp.args.JsonRestore()))
    return restored['state'], dict(restored['totals'] or {})

  def restore_latest(self, like: Any) -> tuple[int | None, Any, dict]:
    """(round, state, totals) of the newest checkpoint that restores; (None, like, {}) when there is none.

    A checkpoint that fails (truncated data, empty or corrupt metadata, another state structure) is
    logged and moved aside to `<directory>.damaged/<round>-<time>`, so the round can be saved again;
    the next older one is tried.

    Raises:
      NoRestorableCheckpointError: checkpoints exist but none restores.
    """
    rounds = self.all_rounds()
    failures = []
    for round_index in reversed(rounds):
      try:
        state, totals = self.restore(round_index, like)
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        summary = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        path = os.path.join(self.directory, str(round_index))
        logging.warning('Checkpoint %s does not restore (%s: %s); trying the previous one.', path,
                        type(error).__name__, summary)
        failures.append(f'{path}: {type(error).__name__}: {summary}')
        continue
      if failures:
        self._set_aside([r for r in rounds if r > round_index])
      return round_index, state, totals
    if failures:
      raise NoRestorableCheckpointError(
          f'No checkpoint in {self.directory} restores:\n  ' + '\n  '.join(failures) +
          '\nIf the config changed the state\'s shapes, use a new --workdir; otherwise pass --overwrite '
          '(overwrite=True) to start afresh.')
    return None, like, {}

  def _set_aside(self, rounds: list[int]) -> None:
    self._manager.close()
    aside = self.directory + '.damaged'
    os.makedirs(aside, exist_ok=True)
    for round_index in rounds:
      target = os.path.join(aside, f'{round_index}-{int(time.time())}')
      shutil.move(os.path.join(self.directory, str(round_index)), target)
      logging.warning('Moved the damaged checkpoint of round %d to %s.', round_index, target)
    self._manager = self._open()

  def close(self) -> None:
    self._manager.close()
