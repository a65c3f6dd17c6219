"""Gantt chart per worker (computing / waiting / communicating) for sync, async and SSP.

  python -m experiments.figures.timeline [--outdir figures_out] [--workdir runs/sync_async]  (after experiments.run --config=configs/sync_async.py)
The same compute-time draws (25 % of gradients 10x slower) drive all three; the window is the time
sync needs for its iterations.
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments.figures import _studies as study

KIND_COLORS = {'compute': 'tab:blue', 'wait': 'tab:orange', 'communication': 'tab:green'}


def main(argv=None):
  args = study.figure_args(__doc__, argv)
  data = study.sync_async('timeline', args.workdir)
  panels = data['panels']
  m = data['num_workers']
  fig, axes = plt.subplots(len(panels), 1, figsize=(11, 1.0 + 0.55 * m * len(panels)), sharex=True, squeeze=False)
  for ax, (name, seg) in zip(axes[:, 0], panels.items()):
    for worker, start, end, kind in zip(seg['worker'], seg['start'], seg['end'], seg['kind']):
      ax.broken_barh([(1e3 * start, 1e3 * (end - start))], (worker - 0.4, 0.8), color=KIND_COLORS[kind],
                     edgecolor='white', linewidth=0.3)
    ax.set_yticks(range(m), [f'worker {i}' for i in range(m)])
    ax.invert_yaxis()
    ax.set_title(f"{name}: {seg['gradients']} gradients delivered")
  axes[-1, 0].set_xlim(0, 1e3 * data['horizon'])
  axes[-1, 0].set_xlabel('simulated wall-clock (ms)')
  fig.legend(handles=[Patch(color=c, label=k) for k, c in KIND_COLORS.items()], loc='upper right', ncol=3)
  fig.tight_layout(rect=(0, 0, 1, 0.96))
  for path in study.save_figure(fig, args.outdir, 'timeline'):
    print(path)
  plt.close(fig)


if __name__ == '__main__':
  main()
