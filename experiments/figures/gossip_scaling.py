"""Figure: test accuracy vs number of nodes for ring, exponential and complete graphs (D-PSGD).

  python -m experiments.decentralized --study=scaling && python -m experiments.figures.gossip_scaling
"""

import argparse

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments import decentralized  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  decentralized.figure_arguments(parser, 'scaling')
  args = parser.parse_args(argv)
  results = decentralized.load_or_run('scaling', args.results, args.small)
  config = results['config']
  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  panels = (('test_accuracy', 'test accuracy of the node average'),
            ('node_test_accuracy', "mean of the nodes' own test accuracy"),
            ('consensus_error', 'final consensus error'))
  for name, marker in zip(config['topologies'], 'osd^v'):
    rows = [r for r in results['rows'] if r['topology'] == name]
    n = [r['num_nodes'] for r in rows]
    for ax, (key, _) in zip(axes, panels):
      ax.plot(n, [r[key] for r in rows], marker=marker, label=name)
  for ax, (_, label) in zip(axes, panels):
    ax.set_xscale('log', base=2)
    ax.set_xlabel('number of nodes N')
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
  axes[2].set_yscale('log')
  fig.suptitle(f'D-PSGD on Digits, Dirichlet({config["data"]["alpha"]}) over N nodes, {config["steps"]} '
               f'iterations, a = {config["learning_rate"]}, batch {config["batch_size"]} per node')
  fig.tight_layout()
  decentralized.save_figure(fig, args.outdir, 'gossip_scaling')


if __name__ == '__main__':
  main()
