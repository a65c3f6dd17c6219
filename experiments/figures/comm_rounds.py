"""Figure: test accuracy vs communication rounds for FedSGD and FedAvg(E, B), per partition (McMahan et al. 2017).

  python -m experiments.run --config=configs/comm_digits.py --workdir=runs/comm_digits
  python -m experiments.figures.comm_rounds --workdir=runs/comm_digits
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402

WORKDIR = 'runs/comm_digits'


def load(workdir: str) -> dict:
  """Rows (partition, algorithm, E, B, rounds to target, speedup over FedSGD) and accuracy curves of
  the configs/comm_digits.py sweep (run names '<partition>_fedsgd', '<partition>_E<e>_B<b>')."""
  runs = _studies.runs(workdir)
  config = next(iter(runs.values()))['summary']
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, next(iter(runs)), 'config.json')) as f:
    target = json.load(f)['study']['target']
  results = {'target': target, 'rows': [], 'curves': {}, 'c_sweep': []}
  fedsgd = {}
  for name, run in runs.items():
    partition, rest = name.split('_', 1)
    accuracy = _studies.curve(run, 'test_accuracy')
    hit = _studies.rounds_to_target(accuracy, target)
    if rest.startswith('C'):
      results['c_sweep'].append({'partition': partition, 'C': float(rest[1:]), 'rounds': hit})
      continue
    if rest == 'fedsgd':
      label, e, b = 'FedSGD', None, None
      fedsgd[partition] = hit
    else:
      e, b = rest[1:].split('_B')
      e, b = int(e), (-1 if b == 'inf' else int(b))
      label = f'FedAvg E={e} B={"inf" if b == -1 else b}'
    base = fedsgd.get(partition)
    results['rows'].append({'partition': partition, 'algorithm': label, 'E': e, 'B': b, 'rounds': hit,
                            'speedup': (base / hit) if (hit and base) else None,
                            'final_accuracy': accuracy[-1], 'max_rounds': len(accuracy)})
    results['curves'][f'{partition}/{label}'] = {'test_accuracy': accuracy}
  del config
  return results


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], WORKDIR, argv)
  results = load(args.workdir)
  partitions = list(dict.fromkeys(row['partition'] for row in results['rows']))
  fig, axes = plt.subplots(1, len(partitions), figsize=(4.2 * len(partitions), 3.6), sharey=True)
  axes = [axes] if len(partitions) == 1 else axes
  for ax, partition in zip(axes, partitions):
    for row in results['rows']:
      if row['partition'] != partition or not (row['algorithm'] == 'FedSGD' or row['B'] == 10 or row['E'] == 1):
        continue
      curve = results['curves'][f'{partition}/{row["algorithm"]}']['test_accuracy']
      style = dict(color='k', lw=2) if row['algorithm'] == 'FedSGD' else {}
      ax.plot(range(1, len(curve) + 1), curve, label=row['algorithm'], **style)
    ax.axhline(results['target'], color='gray', ls=':', lw=1)
    ax.set_xscale('log')
    ax.set_ylim(0.3, 1.0)
    ax.set_title(partition)
    ax.set_xlabel('communication rounds')
  axes[0].set_ylabel('test accuracy')
  axes[-1].legend(fontsize=7, loc='lower right')
  fig.suptitle('FedSGD vs FedAvg on Digits (20 clients, C = 0.5)')
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'comm_rounds.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'comm_rounds.png'))


if __name__ == '__main__':
  main()
