"""Figure: unstable clients: accuracy per round under dropout and deadlines (left); the server weight on the
mean number of clients that report per round (right).

  python -m experiments.run --config=configs/unstable_digits.py --workdir=runs/unstable_digits
  python -m experiments.figures.unstable_clients --workdir=runs/unstable_digits
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402


def load(workdir: str) -> dict:
  """Accuracy curves and mean participants per run of the configs/unstable_digits.py sweep."""
  results = {'curves': {}, 'rows': []}
  for name, run in _studies.runs(workdir).items():
    label = name.replace('_', ' ')
    results['curves'][label] = {'test_accuracy': _studies.curve(run, 'test_accuracy')}
    results['rows'].append({'setting': label, 'mean_participants': float(sum(_studies.curve(run, 'participants'))
                                                                          / max(1, len(run['metrics']) - 1))})
  return results


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/unstable_digits', argv)
  results = load(args.workdir)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for name, curve in results['curves'].items():
    ls = '-' if name.startswith('dropout') else '--'
    left.plot(range(1, len(curve['test_accuracy']) + 1), curve['test_accuracy'], ls=ls, label=name)
  left.set(xlabel='round', ylabel='test accuracy', title='Dropout (solid) and deadlines (dashed)')
  left.set_ylim(0.3, 1.0)
  left.legend(fontsize=7)
  names = [row['setting'] for row in results['rows']]
  participants = [row['mean_participants'] for row in results['rows']]
  right.bar(range(len(names)), participants, color=['C0' if n.startswith('dropout') else 'C3' for n in names])
  right.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
  right.set(ylabel='clients reporting per round', title='Who reaches the server')
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'unstable_clients.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'unstable_clients.png'))


if __name__ == '__main__':
  main()
