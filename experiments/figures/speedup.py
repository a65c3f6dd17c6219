"""Speedup of synchronous data parallelism vs m for several networks, with the ideal line.

  python -m experiments.figures.speedup [--outdir figures_out] [--workdir runs/speedup]  (after experiments.run --config=configs/speedup.py)
(a) least squares, FLOP model; (b) MLP on digits, measured per-worker compute on this CPU;
(c) where an MLP iteration's time goes (1 GB/s ring, exponential stragglers);
(d) the barrier's price: least squares on the fastest network with and without stragglers.
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from experiments.figures import _studies as study

NETWORK_COLORS = ('tab:blue', 'tab:orange', 'tab:red')
TOPOLOGY_STYLES = {'server': '--', 'ring': '-'}


def _speedup_panel(ax, task, networks, m, title):
  ax.loglog(m, m, ':', color='gray')
  for color, (label, _, _) in zip(NETWORK_COLORS, networks):
    for topology, style in TOPOLOGY_STYLES.items():
      curve = task['curves'].get(f'{label} | {topology}')
      if curve is not None:
        ax.loglog(m, curve['speedup'], style, color=color, marker='o', ms=3)
  handles = [Line2D([], [], color='gray', ls=':', label='ideal (speedup = m)')]
  handles += [Line2D([], [], color=c, label=label) for c, (label, _, _) in zip(NETWORK_COLORS, networks)]
  handles += [Line2D([], [], color='black', ls=style, label=topology) for topology, style in TOPOLOGY_STYLES.items()]
  ax.set_xscale('log', base=2)
  ax.set_xlabel('workers m')
  ax.set_ylabel('speedup over one machine')
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3, which='both')
  ax.legend(handles=handles, fontsize=7)


def main(argv=None):
  args = study.figure_args(__doc__, argv, 'runs/speedup')
  data = study.task(args.workdir, 'model')
  m = np.asarray(data['num_workers'])
  networks = data['config']['study']['networks']
  tasks = data['tasks']
  fig, axes = plt.subplots(2, 2, figsize=(11, 9))
  ls, mlp = tasks['least_squares'], tasks['mlp']
  _speedup_panel(axes[0, 0], ls, networks, m,
                 f"(a) least squares, FLOP model (one machine {1e3 * ls['serial_seconds']:.0f} ms)")
  _speedup_panel(axes[0, 1], mlp, networks, m,
                 f"(b) MLP on digits, measured compute (one machine {1e3 * mlp['serial_seconds']:.1f} ms)")

  label = networks[min(1, len(networks) - 1)][0]
  curve = mlp['curves'][f'{label} | ring | stragglers']
  positions = np.arange(len(m))
  bottom = np.zeros(len(m))
  for part, color in (('compute', 'tab:blue'), ('wait', 'tab:orange'), ('communication', 'tab:green')):
    values = 1e3 * np.asarray(curve[part])
    axes[1, 0].bar(positions, values, bottom=bottom, color=color, label=part)
    bottom += values
  axes[1, 0].set_xticks(positions, [str(k) for k in m])
  axes[1, 0].set_ylim(0, 1.08 * bottom.max())
  axes[1, 0].set_xlabel('workers m')
  axes[1, 0].set_ylabel('ms per iteration (stacked)')
  axes[1, 0].set_title(f'(c) MLP: where an iteration goes ({label} ring, stragglers)', fontsize=10)
  axes[1, 0].legend(fontsize=8)
  axes[1, 0].grid(alpha=0.3, axis='y')

  ax = axes[1, 1]
  ax.loglog(m, m, ':', color='gray', label='ideal')
  fast = networks[0][0]
  for key, style, name in ((f'{fast} | ring', '-', 'no stragglers'), (f'{fast} | ring | stragglers', '--',
                                                                       'stragglers 1 + Exp(0.2)')):
    ax.loglog(m, ls['curves'][key]['speedup'], style, color='tab:blue', marker='o', ms=3, label=name)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('workers m')
  ax.set_ylabel('speedup')
  ax.set_title(f'(d) least squares, {fast} ring: the barrier\'s price', fontsize=10)
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  fig.suptitle(f"Synchronous data parallelism (compute measured on {data['device']}; communication modelled)")
  fig.tight_layout()
  for path in study.save_figure(fig, args.outdir, 'speedup'):
    print(path)
  plt.close(fig)


if __name__ == '__main__':
  main()
