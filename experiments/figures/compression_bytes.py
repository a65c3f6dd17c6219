"""Figure: final test accuracy vs uploaded bytes for quantization and top-k (with/without error feedback).

  python -m experiments.run --config=configs/compression_digits.py --workdir=runs/compression_digits
  python -m experiments.figures.compression_bytes --workdir=runs/compression_digits
"""

import os

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from experiments.figures import _studies  # noqa: E402

WORKDIR = 'runs/compression_digits'


def load(workdir: str) -> dict:
  """One row per compressor of the configs/compression_digits.py sweep: accuracy (mean over seeds of
  the last 5% of rounds), its spread, and the bytes uploaded over the run."""
  import json  # pylint: disable=g-import-not-at-top
  groups = {}
  for name, run in _studies.runs(workdir).items():
    section = dict(run['overrides']['compression'])
    key = name.rsplit('_seed', 1)[0]
    group = groups.setdefault(key, {'section': section, 'accuracy': [], 'mbytes': []})
    group['accuracy'].append(_studies.tail_mean(_studies.curve(run, 'test_accuracy'), 0.05))
    group['mbytes'].append(_studies.final(run, 'bytes_up_total') / 1e6)
    summary = run['summary']
  rows = []
  for key, group in groups.items():
    section = group['section']
    if section['name'] == 'none':
      label = 'float32 (none)'
    elif section['name'] == 'quantize':
      label = f'{section["bits"]}-bit' + (' + rotation' if section.get('rotate') else '')
    else:
      label = f'top-{section["fraction"]:.0%}' + (' + EF' if section.get('error_feedback', True) else ' no EF')
    rows.append({'compressor': label, **section, 'accuracy': float(np.mean(group['accuracy'])),
                 'accuracy_std': float(np.std(group['accuracy'])), 'mbytes_up': float(np.mean(group['mbytes']))})
  del json
  return {'num_params': summary['num_params'], 'rows': rows}


def _family(row):
  if row['name'] == 'none':
    return 'float32', 'k', 'o'
  if row['name'] == 'quantize':
    return ('quantize + rotation', 'C1', 's') if row.get('rotate') else ('quantize', 'C0', 's')
  return ('top-k + EF', 'C2', '^') if row.get('error_feedback', True) else ('top-k, no EF', 'C3', 'v')


def main(argv=None):
  args = _studies.arguments(__doc__.split('\n')[0], WORKDIR, argv)
  results = load(args.workdir)
  fig, ax = plt.subplots(figsize=(6, 4))
  seen = set()
  for row in results['rows']:
    family, color, marker = _family(row)
    ax.errorbar(row['mbytes_up'], row['accuracy'], yerr=row['accuracy_std'], color=color, marker=marker,
                label=None if family in seen else family, capsize=2, ls='none')
    seen.add(family)
    ax.annotate(row['compressor'].replace(' + rotation', '+R').replace(' + EF', '').replace(' no EF', ''),
                (row['mbytes_up'], row['accuracy']), fontsize=6, xytext=(3, 3), textcoords='offset points')
  ax.set_xscale('log')
  ax.set(xlabel='MB uploaded over the run', ylabel='final test accuracy',
         title=f'Compression on Digits (D = {results["num_params"]})')
  ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(args.outdir, exist_ok=True)
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(args.outdir, f'compression_bytes.{ext}'), dpi=150)
  print('wrote', os.path.join(args.outdir, 'compression_bytes.png'))


if __name__ == '__main__':
  main()
