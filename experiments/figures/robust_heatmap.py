"""Figure: the robustness grid as heatmaps (final test accuracy, defence x attack@fraction), one
panel per data heterogeneity, with the no-attack column first.

  python -m experiments.run --config=configs/robust_grid.py --workdir=runs/robust_grid
  python -m experiments.figures.robust_heatmap --workdir=runs/robust_grid

"""

import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.figures import _studies  # noqa: E402

PRETTY = {'iid': 'IID', 'dirichlet_1': 'Dirichlet(1.0)', 'dirichlet_0_1': 'Dirichlet(0.1)'}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/robust_grid')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  cells, grid = _studies.robust_cells(args.workdir)
  table = _studies.summarize(cells)
  fractions = [f for f in grid.grid.fractions if f > 0]
  attacks = [a for a in grid.grid.attacks]
  columns = [('none', 0.0)] + [(a, f) for a in attacks for f in fractions]
  defences = list(grid.grid.defences)
  partitions = list(grid.grid.partitions)

  fig, axes = plt.subplots(len(partitions), 1, squeeze=False, layout='constrained',
                           figsize=(0.5 * len(columns) + 2.6, 0.36 * len(defences) * len(partitions) + 1.8))
  for row, (ax, partition) in enumerate(zip(axes[:, 0], partitions)):
    values = np.full((len(defences), len(columns)), np.nan)
    for i, defence in enumerate(defences):
      for j, (attack, fraction) in enumerate(columns):
        entry = table.get((partition, attack, defence, fraction))
        if entry is not None:
          values[i, j] = entry['accuracy']
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap='RdYlGn', aspect='auto')
    for i in range(len(defences)):
      for j in range(len(columns)):
        if np.isfinite(values[i, j]):
          ax.text(j, i, f'{100 * values[i, j]:.0f}', ha='center', va='center', fontsize=6.5)
    for k in range(len(attacks)):
      ax.axvline(0.5 + k * len(fractions), color='k', lw=0.8)
    ax.set_yticks(range(len(defences)), defences, fontsize=7)
    ax.set_xticks(range(len(columns)), ['none'] + [f'{f:.0%}' for _, f in columns[1:]], fontsize=6.5)
    ax.set_ylabel(PRETTY.get(partition, partition), fontsize=9)
    if row == 0:  # attack names over their fraction columns
      ax.text(0, -0.8, 'no\nattack', ha='center', va='bottom', fontsize=7)
      for k, attack in enumerate(attacks):
        ax.text(1 + k * len(fractions) + (len(fractions) - 1) / 2, -0.8, attack, ha='center', va='bottom',
                fontsize=7.5)
  axes[-1, 0].set_xlabel('attack and Byzantine fraction')
  fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, label='final test accuracy')
  fig.suptitle(f'Byzantine robustness on {grid.base.data.name}: final test accuracy (%) after '
               f'{grid.base.rounds} rounds, {grid.base.clients_per_round} clients', fontsize=10)
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'robust_heatmap.{ext}'), dpi=150, bbox_inches='tight')
  print('wrote', os.path.join(args.outdir, 'robust_heatmap.png'))


if __name__ == '__main__':
  main()
