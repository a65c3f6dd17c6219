"""Executes the Colab tour headless in small-size mode: every cell must run without error."""

import os
import subprocess
import sys

import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab', 'tour.ipynb')


def test_notebook_matches_its_builder():
  sys.path.insert(0, os.path.join(ROOT, 'experiments', 'colab'))
  try:
    import build_tour
  finally:
    sys.path.pop(0)
  built = build_tour.build()
  stored = nbformat.read(NOTEBOOK, as_version=4)
  assert [c.source for c in stored.cells] == [c.source for c in built.cells], (
      'tour.ipynb is stale: run python experiments/colab/build_tour.py')


@pytest.mark.slow
def test_tour_runs_clean_in_small_mode(tmp_path, monkeypatch):
  for name in ('JUPYTER_DATA_DIR', 'JUPYTER_RUNTIME_DIR', 'IPYTHONDIR'):
    path = tmp_path / name.lower()
    path.mkdir()
    monkeypatch.setenv(name, str(path))
  monkeypatch.setenv('FEDJAX_LAB_TOUR_SMALL', '1')
  monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
  # One CPU device in the kernel: the tour is about the algorithms, not the mesh.
  monkeypatch.setenv('XLA_FLAGS', '')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # kernel 'python3' whose argv[0] is 'python' is launched with sys.executable (the venv's python).
  client = nbclient.NotebookClient(notebook, kernel_name='python3', timeout=240,
                                   resources={'metadata': {'path': str(tmp_path)}})
  client.execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.get('outputs', [])]
  assert not [o for o in outputs if o.output_type == 'error']
  text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert f'python: {sys.executable}' in text
  assert sum('image/png' in o.get('data', {}) for o in outputs) >= 4
