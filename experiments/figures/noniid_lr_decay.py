"""Figure: global training loss on Non-IID Synthetic(1,1): fixed vs decaying lr, E, participation, FedProx,
SCAFFOLD (left); FedAvg vs FedProx over Synthetic(alpha, beta) (right). Li et al. (2020).

  python -m experiments.fl_studies --study=noniid && python -m experiments.figures.noniid_lr_decay
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--results', default='runs/fl_studies/noniid.json')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(args.results) as f:
    results = json.load(f)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for name, curve in results['curves'].items():
    style = dict(lw=2.2) if name.startswith('FedAvg fixed lr') and name.endswith('lr') else {}
    if name == 'FedAvg decaying lr':
      style = dict(lw=2.2, color='k')
    left.plot(range(1, len(curve['global_train_loss']) + 1), curve['global_train_loss'], label=name, **style)
  left.set_yscale('log')
  left.set(xlabel='round', ylabel='global training loss', title='Synthetic(1,1): plateau vs decay')
  left.legend(fontsize=7)
  for i, (key, runs) in enumerate(results['synthetic'].items()):
    for name, curve in runs.items():
      ls = '-' if name == 'FedAvg' else '--'
      right.plot(range(1, len(curve['global_train_loss']) + 1), curve['global_train_loss'], ls=ls, color=f'C{i}',
                 label=f'{name} {key}')
  right.set_yscale('log')
  right.set(xlabel='round', ylabel='global training loss', title='Synthetic(alpha, beta)')
  right.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'noniid_lr_decay.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'noniid_lr_decay.png'))


if __name__ == '__main__':
  main()
