"""Figure: unstable clients: accuracy per round under dropout and deadlines (left); the server weight on the
largest 20% of clients vs their data share (right).

  python -m experiments.fl_studies --study=unstable && python -m experiments.figures.unstable_clients
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--results', default='runs/fl_studies/unstable.json')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(args.results) as f:
    results = json.load(f)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for name, curve in results['curves'].items():
    ls = '-' if name.startswith('dropout') else '--'
    left.plot(range(1, len(curve['test_accuracy']) + 1), curve['test_accuracy'], ls=ls, label=name)
  left.set(xlabel='round', ylabel='test accuracy', title='Dropout (solid) and deadlines (dashed)')
  left.set_ylim(0.3, 1.0)
  left.legend(fontsize=7)
  names = [row['setting'] for row in results['rows']]
  shares = [row['weight_share_large'] for row in results['rows']]
  right.bar(range(len(names)), shares, color=['C0' if n.startswith('dropout') else 'C3' for n in names])
  right.axhline(results['data_share_large'], color='k', ls=':', label='their share of the data')
  right.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
  right.set(ylabel='server weight on the largest 20% of clients', title='Who the server listens to')
  right.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'unstable_clients.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'unstable_clients.png'))


if __name__ == '__main__':
  main()
