"""Figure: global training loss on Non-IID Synthetic(1,1): fixed vs decaying lr, E, participation, FedProx,
SCAFFOLD (left); FedAvg vs FedProx over Synthetic(alpha, beta) (right). Li et al. (2020).

  python -m experiments.run --config=configs/noniid_synthetic.py --workdir=runs/noniid_synthetic
  python -m experiments.figures.noniid_lr_decay --workdir=runs/noniid_synthetic
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402

WORKDIR = 'runs/noniid_synthetic'


def load(workdir: str) -> dict:
  """Global-training-loss curves of the configs/noniid_synthetic.py sweep: Synthetic(1,1) runs, and
  the 'synthetic_<alpha>_<beta>_<algorithm>' runs grouped by (alpha, beta)."""
  results = {'curves': {}, 'synthetic': {}}
  for name, run in _studies.runs(workdir).items():
    curves = {'global_train_loss': _studies.curve(run, 'global_train_loss'),
              'test_accuracy': _studies.curve(run, 'test_accuracy')}
    if name.startswith('synthetic_'):
      _, alpha, beta, algorithm = name.split('_', 3)
      label = 'FedAvg' if algorithm == 'fedavg' else 'FedProx'
      results['synthetic'].setdefault(f'({alpha},{beta})', {})[label] = curves
    else:
      label = name.replace('fedavg', 'FedAvg').replace('fedprox', 'FedProx').replace('scaffold', 'SCAFFOLD')
      results['curves'][label.replace('_', ' ')] = curves
  return results


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], WORKDIR, argv)
  results = load(args.workdir)
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
