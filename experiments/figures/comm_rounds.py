"""Figure: test accuracy vs communication rounds for FedSGD and FedAvg(E, B), per partition (McMahan et al. 2017).

  python -m experiments.fl_studies --study=comm && python -m experiments.figures.comm_rounds
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--results', default='runs/fl_studies/comm.json')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(args.results) as f:
    results = json.load(f)
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
