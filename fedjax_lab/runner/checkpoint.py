"""Checkpoints of the run state with orbax: save every k rounds, resume from the latest."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of a state pytree under `directory`, by round."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_round(self) -> int | None:
    return self._manager.latest_step()

  def save(self, round_index: int, state: Any) -> None:
    self._manager.save(round_index, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, like: Any) -> Any:
    """Restores into the structure, shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(round_index, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.close()
