"""Figure: test accuracy vs number of nodes for ring, exponential and complete graphs (D-PSGD).

  python -m experiments.run --config=configs/gossip_scaling.py --workdir=runs/gossip_scaling
"""


import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.figures import _studies  # noqa: E402


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/gossip_scaling', argv)
  results = _studies.gossip('scaling', args.workdir)
  config = results['config']
  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  panels = (('test_accuracy', 'test accuracy of the node average'),
            ('node_test_accuracy', "mean of the nodes' own test accuracy"),
            ('consensus_error', 'final consensus error'))
  seeds = sorted({r.get('seed', 0) for r in results['rows']})
  for name, marker in zip(config['topologies'], 'osd^v'):
    rows = [r for r in results['rows'] if r['topology'] == name]
    n = sorted({r['num_nodes'] for r in rows})
    for ax, (key, _) in zip(axes, panels):
      values = np.array([[r[key] for r in rows if r['num_nodes'] == size] for size in n])  # [len(n), seeds]
      mean = values.mean(axis=1)
      ax.plot(n, mean, marker=marker, label=name)
      if values.shape[1] > 1:
        ax.fill_between(n, values.min(axis=1), values.max(axis=1), alpha=0.2)
  for ax, (_, label) in zip(axes, panels):
    ax.set_xscale('log', base=2)
    ax.set_xlabel('number of nodes N')
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
  axes[2].set_yscale('log')
  data = config['data']
  split = (f'{data["shards_per_client"]} label shards per node' if data['partition'] == 'shards'
           else f'Dirichlet({data.get("alpha")})' if data['partition'] == 'dirichlet' else data['partition'])
  fig.suptitle(f'D-PSGD on Digits, {split}, over N nodes, {config["steps"]} '
               f'iterations, a = {config["learning_rate"]}, batch {config["batch_size"]} per node; mean and '
               f'range over {len(seeds)} seed(s)')
  fig.tight_layout()
  _studies.save_figure(fig, args.outdir, 'gossip_scaling')


if __name__ == '__main__':
  main()
