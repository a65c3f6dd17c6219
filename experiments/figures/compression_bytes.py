"""Figure: final test accuracy vs uploaded bytes for quantization and top-k (with/without error feedback).

  python -m experiments.fl_studies --study=compression && python -m experiments.figures.compression_bytes
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def _family(row):
  if row['name'] == 'none':
    return 'float32', 'k', 'o'
  if row['name'] == 'quantize':
    return ('quantize + rotation', 'C1', 's') if row.get('rotate') else ('quantize', 'C0', 's')
  return ('top-k + EF', 'C2', '^') if row.get('error_feedback', True) else ('top-k, no EF', 'C3', 'v')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--results', default='runs/fl_studies/compression.json')
  parser.add_argument('--outdir', default='figures_out')
  args = parser.parse_args(argv)
  with open(args.results) as f:
    results = json.load(f)
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
