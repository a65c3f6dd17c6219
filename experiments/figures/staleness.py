"""Staleness histograms of asynchronous SGD under several straggler models (and SSP).

  python -m experiments.figures.staleness [--outdir figures_out] [--workdir runs/sync_async]  (after experiments.run --config=configs/sync_async.py)
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from experiments.figures import _studies as study


def main(argv=None):
  args = study.figure_args(__doc__, argv)
  data = study.sync_async('staleness', args.workdir)
  fig, ax = plt.subplots(figsize=(8, 4.8))
  styles = ('-', '-', '-', '-', '--')
  for (name, hist), style in zip(data['histograms'].items(), styles * 2):
    counts = np.asarray(hist['counts'], float)
    tau = np.arange(len(counts))
    ax.step(tau, counts / counts.sum(), style, where='mid', lw=2.5 if name == 'equal speeds' else 1.3,
            label=f"{name}: mean {hist['mean']:.1f}, max {hist['max']}", zorder=1 if name == 'equal speeds' else 2)
  ax.set_xscale('symlog', linthresh=10)
  ax.set_yscale('log')
  ax.set_xlabel(r'staleness $\tau$ (server versions between pull and push)')
  ax.set_ylabel('fraction of updates')
  ax.set_title(f"Asynchronous SGD, m = {data['num_workers']} workers, no communication delay")
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  fig.tight_layout()
  for path in study.save_figure(fig, args.outdir, 'staleness'):
    print(path)
  plt.close(fig)


if __name__ == '__main__':
  main()
