"""Loss vs gradients and vs simulated wall-clock: sync vs async (and FedBuff), 0 / 1 / 25 % stragglers.

  python -m experiments.figures.sync_async_loss [--outdir figures_out] [--workdir runs/sync_async]  (after experiments.run --config=configs/sync_async.py)
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments.figures import _studies as study


def main(argv=None):
  args = study.figure_args(__doc__, argv)
  data = study.sync_async('loss', args.workdir)
  panels = data['panels']
  m = data['num_workers']
  fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7), squeeze=False, sharey=True)
  for col, (probability, curves) in enumerate(panels.items()):
    for name, curve in curves.items():
      color = study.method_color(name)
      rounds = [g / m for g in curve['gradients']]
      axes[0, col].semilogy(rounds, curve['loss_gap'], color=color, label=name)
      axes[1, col].semilogy([1e3 * t for t in curve['time']], curve['loss_gap'], color=color, label=name)
    axes[0, col].set_title(f'{float(probability):.0%} stragglers (10x slower), m = {m}')
    axes[0, col].set_xlabel(f'gradients computed / m')
    axes[1, col].set_xlabel('simulated wall-clock (ms)')
  for row in range(2):
    axes[row, 0].set_ylabel(r'$f(w) - f^\star$')
    for ax in axes[row]:
      ax.grid(alpha=0.3)
  axes[0, 0].legend()
  fig.suptitle('Least squares: synchronous GD (step 1/L) vs asynchronous SGD (step 1/(mL)) on m shards')
  fig.tight_layout()
  for path in study.save_figure(fig, args.outdir, 'sync_async_loss'):
    print(path)
  plt.close(fig)


if __name__ == '__main__':
  main()
