"""Figure: backdoor attack success vs clean accuracy, with and without model-replacement boosting,
for the mean and the defences; and success over rounds for the mean vs norm bounding.

  python -m experiments.run --config=configs/robust_grid.py:backdoor --workdir=runs/robust_backdoor
  python -m experiments.figures.robust_backdoor --workdir=runs/robust_backdoor

"""

import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402

BACKDOORS = {'backdoor': 'o', 'backdoor_boosted': '^'}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/robust_backdoor')
  parser.add_argument('--outdir', default='figures_out')
  parser.add_argument('--partition', default='iid')
  args = parser.parse_args(argv)
  cells, grid = _studies.robust_cells(args.workdir)
  cells = [c for c in cells if c['partition'] == args.partition]
  defences = list(grid.grid.defences)
  colors = {d: plt.get_cmap('tab10')(k % 10) for k, d in enumerate(defences)}
  fractions = sorted({c['fraction'] for c in cells if c['attack'] in BACKDOORS})

  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.0))
  for c in cells:
    if c['attack'] not in BACKDOORS:
      continue
    size = 20 + 300 * c['fraction']
    left.scatter(c['final_accuracy'], c['final_backdoor_success'], s=size, marker=BACKDOORS[c['attack']],
                 color=colors[c['defence']], alpha=0.8, edgecolor='k', lw=0.4)
  for d in defences:
    left.scatter([], [], color=colors[d], label=d)
  for attack, marker in BACKDOORS.items():
    left.scatter([], [], marker=marker, color='gray', label=attack.replace('_', ' '))
  left.set_xlabel('clean test accuracy')
  left.set_ylabel('backdoor success (triggered, non-target test inputs)')
  left.set_xlim(0, 1)
  left.set_ylim(-0.02, 1.02)
  left.grid(alpha=0.3)
  left.legend(fontsize=7, loc='center left')
  left.set_title(f'final round; marker size = Byzantine fraction {fractions}', fontsize=8)

  small = min((f for f in fractions if f > 0), default=0.0)
  for c in cells:
    if c['defence'] not in ('mean', 'norm_bounded_mean') or c['attack'] not in BACKDOORS or c['fraction'] != small:
      continue
    style = '-' if c['attack'] == 'backdoor_boosted' else '--'
    right.plot(c['rounds'], c['backdoor_success'], style, color=colors[c['defence']],
               label=f"{c['defence']}, {c['attack'].replace('_', ' ')}")
  right.set_xlabel('round')
  right.set_ylabel('backdoor success')
  right.set_ylim(-0.02, 1.02)
  right.grid(alpha=0.3)
  right.legend(fontsize=7)
  right.set_title(f'{small:.0%} Byzantine: norm bounding vs the mean', fontsize=8)
  fig.suptitle(f'Backdoor (2x2 corner trigger -> class 0) on {grid.base.data.name}, {args.partition}', fontsize=10)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'robust_backdoor.{ext}'), dpi=150, bbox_inches='tight')
  print('wrote', os.path.join(args.outdir, 'robust_backdoor.png'))


if __name__ == '__main__':
  main()
