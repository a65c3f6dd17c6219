"""Run outputs: one JSON object per evaluation in metrics.jsonl (and the same rows as CSV)."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any


def _plain(value: Any) -> Any:
  try:
    value = value.item()
  except AttributeError:
    pass
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them visible as strings.
  return value


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
  """Appends rows to `workdir/metrics.jsonl`; on resume drops rows past the restored round."""

  def __init__(self, workdir: str, resume_round: int | None, enabled: bool = True):
    """`enabled=False` (processes other than 0 of a multi-process run) keeps rows in memory only."""
    self.enabled = enabled
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self.csv_path = os.path.join(workdir, 'metrics.csv')
    rows = read_jsonl(self.jsonl_path)
    keep = [] if resume_round is None else [r for r in rows if r['round'] <= resume_round]
    self.rows: list[dict] = keep
    self._rewrite()

  def _rewrite(self) -> None:
    if not self.enabled:
      return
    with open(self.jsonl_path, 'w') as f:
      for row in self.rows:
        f.write(json.dumps(row) + '\n')
    self._write_csv()

  def _write_csv(self) -> None:
    keys: list[str] = []
    for row in self.rows:
      keys += [k for k in row if k not in keys]
    with open(self.csv_path, 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=keys)
      writer.writeheader()
      writer.writerows(self.rows)

  def write(self, row: dict) -> None:
    row = {k: _plain(v) for k, v in row.items()}
    self.rows.append(row)
    if not self.enabled:
      return
    with open(self.jsonl_path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    self._write_csv()
