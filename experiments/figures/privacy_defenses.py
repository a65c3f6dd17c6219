"""Figure: reconstruction error of DLG vs the strength of each defence, beside FedSGD's test accuracy.

  python -m experiments.run --config=configs/dlg_digits.py --workdir=runs/dlg_digits
  python -m experiments.figures.privacy_defenses --workdir=runs/dlg_digits
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

FLOOR = 1e-8  # MSEs below this (exact reconstructions reach ~1e-15) are drawn at the floor

# defence -> (x label, function strength -> x, axis scale, stronger to the right?)
AXES = {
    'noise': ('noise std per coordinate', lambda s: s, 'symlog', False),
    'clip': ('clip norm C', lambda s: s, 'log', True),
    'topk': ('fraction of coordinates kept', lambda s: 1.0 - s, 'log', True),
    'quantize': ('bits per coordinate', lambda s: s, 'log', True),
    'batch': ('examples per gradient', lambda s: s, 'log', False),
}


def _mean_digit_mse():
  from sklearn.datasets import load_digits
  x = load_digits().images / 16.0
  return float(np.mean((x - x.mean(0)) ** 2))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/dlg_digits', help='the configs/dlg_digits.py sweep')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(os.path.join(args.workdir, 'defenses', 'result.json')) as f:  # the task's output
    results = json.load(f)
  baseline = _mean_digit_mse()
  names = [n for n in AXES if any(r['defense'] == n for r in results['rows'])]
  fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2))
  axes = np.atleast_1d(axes)
  for ax, name in zip(axes, names):
    rows = [r for r in results['rows'] if r['defense'] == name]
    label, to_x, scale, reverse = AXES[name]
    xs = np.array([to_x(r['strength']) for r in rows])
    per_example = np.maximum(np.array([r['mse_per_example'] for r in rows]), FLOOR)  # [points, examples]
    ax.fill_between(xs, per_example.min(1), per_example.max(1), color='C3', alpha=0.15, lw=0)
    ax.plot(xs, np.median(per_example, 1), 'o-', color='C3', label='DLG reconstruction MSE (median, range)')
    ax.axhline(baseline, color='C3', ls=':', lw=1, label='guess the mean digit')
    ax.set_yscale('log')
    ax.set_ylim(FLOOR / 3, 1.0)
    if scale == 'symlog':
      ax.set_xscale('symlog', linthresh=0.01)
    else:
      ax.set_xscale(scale)
    ax.xaxis.set_major_locator(ticker.FixedLocator(xs))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([f'{v:g}' for v in xs]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.tick_params(axis='x', labelsize=7)
    if reverse:
      ax.invert_xaxis()
    ax.set_xlabel(label + '  (stronger →)', fontsize=8)
    ax.set_title(name, fontsize=10)
    acc_ax = ax.twinx()
    acc_ax.plot(xs, [r['test_accuracy'] for r in rows], 's--', color='C0', label='FedSGD test accuracy')
    acc_ax.set_ylim(0, 1)
    if ax is axes[0]:
      ax.set_ylabel(f'reconstruction MSE (floor {FLOOR:g})', color='C3')
    if ax is axes[-1]:
      acc_ax.set_ylabel('test accuracy', color='C0')
    else:
      acc_ax.set_yticklabels([])
  handles = axes[0].get_legend_handles_labels()
  acc_handles = axes[0].get_figure().axes[len(names)].get_legend_handles_labels()
  fig.legend(handles[0] + acc_handles[0], handles[1] + acc_handles[1], loc='lower center', ncol=3, fontsize=8)
  fig.suptitle('Defences against DLG (one-example FedSGD gradient, Digits MLP) and their cost in accuracy',
               fontsize=10)
  fig.tight_layout(rect=(0, 0.08, 1, 0.95))
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'privacy_defenses.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'privacy_defenses.png'))


if __name__ == '__main__':
  main()
