"""Checkpoints of the run state with orbax: save every k rounds, resume from the latest."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _without_empty(tree: Any) -> Any:
  # orbax refuses zero-size arrays (e.g. top-k without error feedback keeps an empty residual); they
  # carry nothing, so they are left out of the checkpoint and taken from `like` on restore.
  return jax.tree.map(lambda a: None if getattr(a, 'size', 1) == 0 else a, tree)


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of a state pytree under `directory`, by round."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_round(self) -> int | None:
    return self._manager.latest_step()

  def save(self, round_index: int, state: Any) -> None:
    self._manager.save(round_index, args=ocp.args.StandardSave(_without_empty(state)))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, like: Any) -> Any:
    """Restores into the structure, shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _without_empty(like))
    restored = self._manager.restore(round_index, args=ocp.args.StandardRestore(abstract))
    return jax.tree.map(lambda empty, saved: empty if saved is None else saved, like, restored)

  def close(self) -> None:
    self._manager.close()
