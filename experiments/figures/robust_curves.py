"""Figure: test accuracy vs rounds, the mean against each defence, under each attack (one
Byzantine fraction), one column per data heterogeneity.

  python -m experiments.figures.robust_curves --workdir=runs/robust_grid --fraction=0.2

"""

import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402

PRETTY = {'iid': 'IID', 'dirichlet_1': 'Dirichlet(1.0)', 'dirichlet_0_1': 'Dirichlet(0.1)'}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/robust_grid')
  parser.add_argument('--outdir', default='figures_out')
  parser.add_argument('--fraction', type=float, default=0.2)
  args = parser.parse_args(argv)
  cells, grid = _studies.robust_cells(args.workdir)
  partitions = list(grid.grid.partitions)
  rows = [('none', 0.0)] + [(a, args.fraction) for a in grid.grid.attacks]
  defences = list(grid.grid.defences)
  colors = plt.get_cmap('tab10')

  fig, axes = plt.subplots(len(rows), len(partitions), figsize=(3.3 * len(partitions), 2.1 * len(rows)),
                           sharex=True, sharey=True, squeeze=False)
  for r, (attack, fraction) in enumerate(rows):
    for c, partition in enumerate(partitions):
      ax = axes[r, c]
      for k, defence in enumerate(defences):
        runs = [x for x in cells if (x['partition'], x['attack'], x['defence']) == (partition, attack, defence)
                and abs(x['fraction'] - fraction) < 1e-9]
        if not runs:
          continue
        style = dict(color='k', lw=2.0, zorder=5) if defence == 'mean' else dict(color=colors(k % 10), lw=1.1)
        ax.plot(runs[0]['rounds'], runs[0]['test_accuracy'], label=defence, **style)
      ax.set_ylim(0, 1)
      ax.grid(alpha=0.3)
      if r == 0:
        ax.set_title(PRETTY.get(partition, partition), fontsize=9)
      if c == 0:
        ax.set_ylabel('no attack' if attack == 'none' else f'{attack}\n{fraction:.0%} Byzantine', fontsize=8)
      if r == len(rows) - 1:
        ax.set_xlabel('round')
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='upper center', ncol=min(len(labels), 8), fontsize=7, bbox_to_anchor=(0.5, 1.0))
  fig.suptitle('Test accuracy vs rounds: mean (black) vs robust aggregators', y=1.03, fontsize=10)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'robust_curves.{ext}'), dpi=150, bbox_inches='tight')
  print('wrote', os.path.join(args.outdir, 'robust_curves.png'))


if __name__ == '__main__':
  main()
