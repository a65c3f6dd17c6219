"""Figure: on a disconnected graph the two components converge to two different models.

  python -m experiments.run --config=configs/gossip_disconnected.py --workdir=runs/gossip_disconnected

(a, b) 2-D least squares, gradient tracking: every node's path on the disconnected graph (two
rings of 8) and on the ring of 16. (c) consensus error. (d) Digits with component A holding classes
0-4 and B classes 5-9: accuracy of each component's average model on each half of the classes.
"""


import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.figures import _studies  # noqa: E402

COLORS = ('tab:blue', 'tab:orange')


def _paths(ax, run, ls, half, title):
  paths = np.asarray(run['trajectory'])  # [T + 1, N, 2]
  for i in range(paths.shape[1]):
    ax.plot(paths[:, i, 0], paths[:, i, 1], color=COLORS[int(i >= half)], lw=0.7, alpha=0.7)
  ax.scatter(paths[-1, :, 0], paths[-1, :, 1], c=[COLORS[int(i >= half)] for i in range(paths.shape[1])], s=12,
             zorder=3)
  ax.set_title(title)
  ax.set_xlabel('$w_1$')
  ax.set_ylabel('$w_2$')


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/gossip_disconnected', argv)
  results = _studies.gossip('disconnected', args.workdir)
  ls = results['least_squares']
  n = results['config']['num_nodes']
  half = n // 2
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
  for ax, name, title in ((axes[0], 'disconnected', f'disconnected: two rings of {half}'),
                          (axes[1], 'ring', f'connected: ring of {n}')):
    _paths(ax, ls['runs'][name], ls, half, title)
    local = np.asarray(ls['local_optima'])
    ax.scatter(local[:, 0], local[:, 1], marker='x', s=18, c=[COLORS[int(i >= half)] for i in range(n)],
               label='local optima')
    for c, optimum in enumerate(ls['component_optima']):
      ax.scatter(*optimum, marker='*', s=180, color=COLORS[c], edgecolor='k', zorder=4,
                 label=f'component {"AB"[c]} optimum')
    ax.scatter(*ls['global_optimum'], marker='*', s=220, color='k', zorder=4, label='global optimum')
  axes[0].legend(fontsize=7, loc='best')
  ax = axes[2]
  for name, ls_style in (('disconnected', '-'), ('ring', '--')):
    ax.plot(ls['runs'][name]['consensus_error'], ls=ls_style, color='k', label=name)
  ax.set_yscale('log')
  ax.set_xlabel('iterations')
  ax.set_ylabel(r'consensus error $\|X - \bar X\|^2 / N$')
  ax.set_title('least squares, gradient tracking')
  ax.legend(fontsize=8)
  ax = axes[3]
  for name, ls_style in (('disconnected', '-'), ('ring', ':')):
    curves = results['classification'][name]
    for c, label in enumerate('AB'):
      for classes, marker in (('0_4', 'o'), ('5_9', 's')):
        ax.plot(curves['step'], curves[f'{label}_acc_classes_{classes}'], ls=ls_style, color=COLORS[c],
                marker=marker, markersize=3, label=f'{name}: {label} on classes {classes.replace("_", "-")}')
  ax.set_xlabel('iterations')
  ax.set_ylabel("test accuracy of the component's average")
  ax.set_title('Digits: A holds classes 0-4, B holds 5-9')
  ax.legend(fontsize=6, loc='center right')
  fig.tight_layout()
  _studies.save_figure(fig, args.outdir, 'gossip_disconnected')


if __name__ == '__main__':
  main()
