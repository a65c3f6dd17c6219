"""Figure: epsilon vs rounds for one DP-FedAvg setting under each accountant and sampling scheme.

  python -m experiments.figures.privacy_accounting   (computes directly; ~1 minute)
"""

import argparse
import logging
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedjax_lab.privacy import accounting  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--outdir', default='figures_out')
  parser.add_argument('--num_clients', type=int, default=1438)
  parser.add_argument('--clients_per_round', type=int, default=50)
  parser.add_argument('--noise_multiplier', type=float, default=1.0)
  parser.add_argument('--delta', type=float, default=1e-4)
  args = parser.parse_args(argv)
  logging.getLogger('absl').setLevel(logging.ERROR)
  rounds = np.unique(np.geomspace(1, 3000, 14).astype(int))
  curves = {
      'Poisson, RDP (add/remove)': ('poisson', 'rdp'),
      'Poisson, PLD (add/remove)': ('poisson', 'pld'),
      'fixed size w/o replacement, RDP (replace-one)': ('fixed_size', 'rdp'),
  }
  fig, ax = plt.subplots(figsize=(5.4, 3.8))
  for label, (sampling, accountant) in curves.items():
    eps = [accounting.compute_epsilon(args.noise_multiplier, args.num_clients, args.clients_per_round, int(t),
                                      args.delta, sampling, accountant) for t in rounds]
    ax.plot(rounds, eps, 'o-', ms=3, label=label)
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('rounds')
  ax.set_ylabel(f'ε at δ = {args.delta:g}')
  ax.set_title(f'σ = {args.noise_multiplier}, m = {args.clients_per_round} of N = {args.num_clients}', fontsize=9)
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'privacy_accounting.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'privacy_accounting.png'))


if __name__ == '__main__':
  main()
