"""Run outputs: one JSON object per evaluation in metrics.jsonl (and the same rows as CSV).

Rows are appended to metrics.jsonl; every other change (trimming to the restored round on resume,
dropping a damaged line, the CSV) writes a new file and renames it over the old one (`os.replace`),
so a kill at any moment leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from absl import logging


def _plain(value: Any) -> Any:
  try:
    value = value.item()
  except AttributeError:
    pass
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them visible as strings.
  return value


def read_jsonl(path: str, tolerate_damage: bool = False) -> list[dict]:
  """The rows of a metrics.jsonl ([] if absent).

  Args:
    path: the file.
    tolerate_damage: drop lines that are not a JSON object with a 'round' (a kill during an append
      leaves a truncated last line) with a warning naming the file and line; otherwise raise.

  Raises:
    ValueError: a damaged line (naming file and line) when not `tolerate_damage`.
  """
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, errors='replace') as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        if not isinstance(row, dict) or 'round' not in row:
          raise ValueError('not a metrics row (a JSON object with a "round")')
      except ValueError as error:
        if not tolerate_damage:
          raise ValueError(f'{path}, line {number} is damaged ({error}): {line[:80]!r}') from error
        logging.warning('Dropping damaged line %d of %s (%s): %r', number, path, error, line[:80])
        continue
      rows.append(row)
  return rows


def _replace_atomically(path: str, write) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w', newline='') as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class MetricsWriter:
  """Appends rows to `workdir/metrics.jsonl`; on resume keeps only rows up to the restored round."""

  def __init__(self, workdir: str, resume_round: int | None, enabled: bool = True, rows: list[dict] | None = None):
    """`resume_round=None`: a fresh start (no rows kept). `enabled=False` (processes other than 0 of a
    multi-process run) keeps rows in memory only. `rows`: the file's rows if already read."""
    self.enabled = enabled
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.csv_path = os.path.join(workdir, 'metrics.csv')
    existed = os.path.exists(self.jsonl_path)
    rows = read_jsonl(self.jsonl_path, tolerate_damage=True) if rows is None else rows
    keep = [] if resume_round is None else [r for r in rows if r['round'] <= resume_round]
    if resume_round is None and rows:
      logging.warning('%s holds %d rows but the run starts at round 0 (no checkpoint); they are replaced.',
                      self.jsonl_path, len(rows))
    if resume_round is not None and keep and keep[-1]['round'] < resume_round:
      logging.warning('%s has rows up to round %d only; resuming at round %d, the rows in between are missing.',
                      self.jsonl_path, keep[-1]['round'], resume_round)
    if resume_round is not None and not existed:
      logging.warning('%s is missing; resuming at round %d, so it will hold the rows from there on only '
                      '(the cumulative totals come from the checkpoint).', self.jsonl_path, resume_round)
    self.rows: list[dict] = keep
    if enabled:
      self._rewrite()

  def _rewrite(self) -> None:
    _replace_atomically(self.jsonl_path, lambda f: f.writelines(json.dumps(row) + '\n' for row in self.rows))
    self._write_csv()

  def _write_csv(self) -> None:
    keys: list[str] = []
    for row in self.rows:
      keys += [k for k in row if k not in keys]

    def write(f):
      writer = csv.DictWriter(f, fieldnames=keys)
      writer.writeheader()
      writer.writerows(self.rows)

    _replace_atomically(self.csv_path, write)

  def write(self, row: dict) -> None:
    row = {k: _plain(v) for k, v in row.items()}
    self.rows.append(row)
    if not self.enabled:
      return
    with open(self.jsonl_path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    self._write_csv()
