"""Per-worker timelines (what a Gantt chart draws): intervals of computing, waiting, communicating."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fedjax_lab.systems.cost_model import SyncTimeline

KINDS = ('compute', 'wait', 'communication')
COMPUTE, WAIT, COMMUNICATION = range(3)


class Segments(NamedTuple):
  """Intervals of activity, one row each.

  Attributes:
    worker: [S] int worker index.
    start: [S] float seconds.
    end: [S] float seconds (>= start).
    kind: [S] int index into KINDS.
  """

  worker: np.ndarray
  start: np.ndarray
  end: np.ndarray
  kind: np.ndarray


def sync_segments(timeline: SyncTimeline) -> Segments:
  """Gantt intervals of a synchronous run: compute, then barrier wait, then communication."""
  num_iterations, num_workers = timeline.compute.shape
  start = np.broadcast_to(timeline.start[:, None], (num_iterations, num_workers))
  compute_end = start + timeline.compute
  wait_end = compute_end + timeline.wait
  comm_end = wait_end + timeline.communication[:, None]
  worker = np.broadcast_to(np.arange(num_workers), (num_iterations, num_workers))
  rows = [(start, compute_end, COMPUTE), (compute_end, wait_end, WAIT), (wait_end, comm_end, COMMUNICATION)]
  return Segments(
      np.concatenate([worker.ravel()] * 3),
      np.concatenate([s.ravel() for s, _, _ in rows]),
      np.concatenate([e.ravel() for _, e, _ in rows]),
      np.concatenate([np.full(num_iterations * num_workers, k) for _, _, k in rows]),
  )


def busy_fraction(segments: Segments, num_workers: int, until: float) -> np.ndarray:
  """[m] fraction of [0, until] each worker spends computing."""
  clipped = np.clip(segments.end, 0, until) - np.clip(segments.start, 0, until)
  busy = np.zeros(num_workers)
  np.add.at(busy, segments.worker[segments.kind == COMPUTE], clipped[segments.kind == COMPUTE])
  return busy / until if until > 0 else busy
