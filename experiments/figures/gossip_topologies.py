"""Figure: consensus error and D-PSGD loss vs iterations per topology, beside the spectral prediction.

  python -m experiments.run --config=configs/gossip_topologies.py --workdir=runs/gossip_topologies

Left: pure gossip from random node values; solid = measured ||X_k - mean||^2 / N, dashed = the
bound rho^(2k) times the start. Middle and right: D-PSGD on Non-IID Digits over the same graphs:
global training loss of the node-average model and consensus error during training.
"""


import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.figures import _studies  # noqa: E402


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/gossip_topologies', argv)
  results = _studies.gossip('topologies', args.workdir)
  config = results['config']
  colors = plt.cm.tab10(np.arange(len(results['gossip'])))
  fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
  ax = axes[0]
  for row, color in zip(results['gossip'], colors):
    errors = np.asarray(row['consensus_error'])
    k = np.arange(len(errors))
    if row['period'] > 1 and row['rho'] == 0:
      label = f'{row["name"]}: exact average after {row["period"]} steps'
    else:
      label = f'{row["name"]}: $\\rho$={row["rho"]:.3f}, measured {row["measured_rate"]:.3f}'
    ax.plot(k, errors, color=color, lw=1.8, label=label)
    if row['rho'] > 0:
      ax.plot(k, errors[0] * row['rho'] ** (2 * k), color=color, ls='--', lw=1)
  ax.set_yscale('log')
  ax.set_ylim(1e-12, None)
  ax.set_xlabel('gossip steps k')
  ax.set_ylabel(r'consensus error $\|X_k - \bar X\|^2 / N$')
  ax.set_title(f'pure gossip, N = {config["num_nodes"]} (dashed: $\\rho^{{2k}}$ bound)')
  ax.legend(fontsize=6.5, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2)
  for name, color in zip([row['name'] for row in results['gossip']], colors):
    curves = results['training'][name]
    axes[1].plot(curves['step'], curves['global_train_loss'], color=color, label=name)
    axes[2].plot(curves['step'], curves['consensus_error'], color=color, label=name)
  axes[1].set_yscale('log')
  axes[1].set_ylabel('training loss of the node average')
  axes[1].set_title(f'D-PSGD, Digits Dirichlet({config["data"]["alpha"]}), a = {config["learning_rate"]}')
  axes[2].set_yscale('log')
  axes[2].set_ylabel(r'consensus error $\|X - \bar X\|^2 / N$')
  axes[2].set_title('consensus error during training')
  for ax in axes[1:]:
    ax.set_xlabel('iterations')
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=4)
  fig.tight_layout()
  _studies.save_figure(fig, args.outdir, 'gossip_topologies')


if __name__ == '__main__':
  main()
