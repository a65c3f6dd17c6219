"""One very slow worker: plain async vs staleness damping, bounded staleness (SSP) and FedBuff.

  python -m experiments.figures.sync_async_slow_worker [--outdir figures_out] [--workdir runs/sync_async]  (after experiments.run --config=configs/sync_async.py)
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments.figures import _studies as study

TITLES = {'sharded': 'each worker holds one shard', 'replicated': 'each worker computes the full gradient'}


def main(argv=None):
  args = study.figure_args(__doc__, argv)
  data = study.sync_async('slow_worker', args.workdir)
  panels = data['panels']
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
  for ax, (panel, curves) in zip(axes[0], panels.items()):
    for name, curve in curves.items():
      style = ':' if name.endswith('no slow worker') else '-'
      label = f"{name} (max staleness {curve['max_staleness']})" if 'max_staleness' in curve else name
      ax.loglog([1e3 * t for t in curve['time'][1:]], curve['loss_gap'][1:], style, color=study.method_color(name),
                label=label, lw=1.3)
    ax.set_title(f"{TITLES.get(panel, panel)}\nworker 0 is {data['factor']:g}x slower, m = {data['num_workers']}")
    ax.set_xlabel('simulated wall-clock (ms)')
    ax.set_ylabel(r'$f(w) - f^\star$')
    ax.set_ylim(bottom=1e-13)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
  fig.tight_layout()
  for path in study.save_figure(fig, args.outdir, 'sync_async_slow_worker'):
    print(path)
  plt.close(fig)


if __name__ == '__main__':
  main()
