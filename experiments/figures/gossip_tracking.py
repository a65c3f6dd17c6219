"""Figure: D-PSGD vs gradient tracking vs exact diffusion under heterogeneous (Non-IID) data.

  python -m experiments.run --config=configs/gossip_tracking.py --workdir=runs/gossip_tracking

(a) heterogeneous least squares, full batch, float64: distance of the node average to the global
optimum; (b) its consensus error; (c) Digits, Dirichlet(0.1) (solid) and IID (dotted): mean of
the nodes' own test accuracy; (d) consensus error on Digits.
"""


import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/gossip_tracking', argv)
  results = _studies.gossip('tracking', args.workdir)
  config = results['config']
  fig, axes = plt.subplots(1, 4, figsize=(18, 5.2))
  for label, curves in results['least_squares'].items():
    axes[0].plot(curves['distance_sq'], label=label)
    axes[1].plot(curves['consensus_error'], label=label)
  axes[0].set_ylabel(r'$\|\bar x_k - x^\star\|^2$')
  axes[0].set_title(f'least squares, {config["topology"]} of {config["num_nodes"]}, full batch (float64)')
  axes[1].set_ylabel(r'consensus error $\|X - \bar X\|^2 / N$')
  axes[1].set_title('least squares: consensus error')
  colors = {'D-PSGD': 'tab:blue', 'gradient tracking': 'tab:orange', 'exact diffusion': 'tab:green'}
  for key, curves in results['classification'].items():
    partition, label = key.split('/')
    style = dict(color=colors[label], ls='-' if partition != 'iid' else ':')
    axes[2].plot(curves['step'], curves['node_test_accuracy'], label=f'{label} ({partition})', **style)
    axes[3].plot(curves['step'], curves['consensus_error'], label=f'{label} ({partition})', **style)
  axes[2].set_ylabel("mean of the nodes' test accuracy")
  axes[2].set_title(f'Digits on a {config["topology"]} of {config["num_nodes"]}, batch {config["batch_size"]}, '
                    f'a = {config["learning_rate"]}')
  axes[3].set_ylabel('consensus error')
  axes[3].set_title('Digits: consensus error')
  for i, ax in enumerate(axes):
    ax.set_xlabel('iterations')
    if i != 2:
      ax.set_yscale('log')
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2)
  axes[2].set_ylim(0.5, 1.0)
  fig.tight_layout()
  _studies.save_figure(fig, args.outdir, 'gossip_tracking')


if __name__ == '__main__':
  main()
