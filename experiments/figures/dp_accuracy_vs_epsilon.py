"""Figure: DP-FedAvg test accuracy vs epsilon for several clients per round (larger cohorts buy privacy cheaper).

  python -m experiments.run --config=configs/dp_digits.py --workdir=runs/dp_digits
  python -m experiments.figures.dp_accuracy_vs_epsilon --workdir=runs/dp_digits
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402


def load(workdir: str) -> dict:
  """One row per run of the configs/dp_digits.py sweep: m, epsilon (runner's accountant) and test accuracy."""
  rows, config = [], None
  for name, run in _studies.runs(workdir).items():
    config = _studies.config_of(run)
    last = run['metrics'][-1]
    sigma = last['noise_multiplier']
    rows.append({'clients_per_round': config['clients_per_round'], 'noise_multiplier': sigma,
                 'target_epsilon': config['dp'].get('target_epsilon') or None,
                 'epsilon': float(last['epsilon']) if sigma > 0 else float('inf'),
                 'epsilon_pld': last.get('epsilon_pld'), 'test_accuracy': last['test_accuracy']})
  return {'num_clients': config['data']['num_clients'], 'rounds': config['rounds'], 'dp': config['dp'], 'rows': rows}


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], 'runs/dp_digits', argv)
  results = load(args.workdir)
  cohorts = sorted({r['clients_per_round'] for r in results['rows']})
  fig, ax = plt.subplots(figsize=(5.2, 3.8))
  for i, m in enumerate(cohorts):
    rows = [r for r in results['rows'] if r['clients_per_round'] == m]
    # Noisy runs, whether sigma was calibrated to a target epsilon or given; noiseless ones are the baseline.
    private = sorted((r for r in rows if r['noise_multiplier'] > 0), key=lambda r: r['epsilon'])
    ax.plot([r['epsilon'] for r in private], [r['test_accuracy'] for r in private], 'o-', color=f'C{i}',
            label=f'm = {m} (q = {m / results["num_clients"]:.3f})')
    for r in private:
      ax.annotate(f"σ={r['noise_multiplier']:.2g}", (r['epsilon'], r['test_accuracy']), fontsize=5.5,
                  xytext=(4, (-10, 3, 10)[i % 3]), textcoords='offset points', color=f'C{i}')
    clipped = [r for r in rows if r['noise_multiplier'] == 0]
    if clipped:
      ax.axhline(clipped[0]['test_accuracy'], color=f'C{i}', ls=':', lw=1)
  ax.set_xscale('log')
  ax.set_ylim(0, 1)
  ax.set_xlabel(f"ε at δ = {results['dp']['delta']:g} ({results['dp']['accountant'].upper()}, "
                f"{results['dp']['sampling']} sampling, {results['rounds']} rounds)")
  ax.set_ylabel('test accuracy')
  ax.set_title(f"DP-FedAvg on Digits, N = {results['num_clients']} clients, C = {results['dp']['clip_norm']}\n"
               '(dotted: clipping without noise)', fontsize=9)
  ax.legend(fontsize=8, loc='lower right')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'dp_accuracy_vs_epsilon.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'dp_accuracy_vs_epsilon.png'))


if __name__ == '__main__':
  main()
