"""Figure: original vs reconstructed inputs over the iterations of DLG/iDLG (digits as 8x8 images, MNIST-1D as curves).

  python -m experiments.run --config=configs/dlg_digits.py --workdir=runs/dlg_digits
  python -m experiments.figures.dlg_progress --workdir=runs/dlg_digits
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _panels(rows):
  """One figure row per reconstructed example: (title, truth, snapshots, steps, label, true label, mse)."""
  out = []
  for row in rows:
    truth = np.asarray(row['x_true'])
    history = np.asarray(row['history'])  # [S, B, ...]
    for b in range(truth.shape[0]):
      title = row['name'] if truth.shape[0] == 1 else f"{row['name']} [{b + 1}/{truth.shape[0]}]"
      out.append((title, truth[b], history[:, b], row['history_steps'], row['labels'][b], row['y_true'][b],
                  row['mse']))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/dlg_digits', help='the configs/dlg_digits.py sweep')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(os.path.join(args.workdir, 'progress', 'result.json')) as f:  # the task's output
    results = json.load(f)
  panels = _panels(results['rows'])
  num_snapshots = len(panels[0][3])
  cols = num_snapshots + 1
  fig, axes = plt.subplots(len(panels), cols, figsize=(1.25 * cols + 2.6, 1.2 * len(panels)), squeeze=False)
  for r, (title, truth, snapshots, steps, label, true_label, mse) in enumerate(panels):
    images = truth.ndim == 2
    for c in range(cols):
      ax = axes[r, c]
      if images:
        shown = truth if c == 0 else snapshots[c - 1]
        ax.imshow(np.clip(shown, 0, 1), cmap='gray_r', vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
      else:
        ax.plot(truth, color='k', lw=1)
        if c > 0:
          ax.plot(np.clip(snapshots[c - 1], truth.min(), truth.max()), color='C3', lw=1)
        ax.set_xticks([])
        ax.set_yticks([])
      if r == 0:
        ax.set_title('original' if c == 0 else f'iter {steps[c - 1]}', fontsize=8)
    axes[r, 0].set_ylabel(f'y={true_label}', fontsize=7)
    axes[r, -1].text(1.08, 0.5, f'{title}\nlabel {label}, MSE {mse:.1e}', transform=axes[r, -1].transAxes,
                     fontsize=6.5, va='center')
  attack = results['attack']
  fig.suptitle(f"Gradient inversion of an MLP {tuple(results['model']['hidden'])} at initialisation "
               f"({attack['optimizer']}, {attack['num_steps']} iterations)", fontsize=9)
  fig.tight_layout(rect=(0, 0, 0.8, 0.97))
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'dlg_progress.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'dlg_progress.png'))


if __name__ == '__main__':
  main()
