"""Writes experiments/colab/tour.ipynb with nbformat, so the notebook is reviewable code.

  python experiments/colab/build_tour.py            # rewrites tour.ipynb (outputs empty)
The notebook is executed headless in CI by tests/experiments/test_tour_notebook.py with
FEDJAX_LAB_TOUR_SMALL=1, which shrinks every size.
"""

from __future__ import annotations

import os

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, 'tour.ipynb')

CELLS = [
    ('md', """# fedjax_lab: a tour
Federated learning as array programs in JAX: clients are an array axis, a round is one jitted function,
a run is a `lax.scan` over rounds. This tour runs, each in well under a minute on a CPU:

1. FedAvg on IID vs Non-IID clients,
2. decentralized D-PSGD on a gossip ring vs a complete graph,
3. a Byzantine sign-flip attack against the mean and the coordinate-wise median,
4. Deep Leakage from Gradients (DLG): rebuilding a client's image from its gradient.

Every cell is self-contained after the set-up cells; *Restart and run all* reproduces the figures."""),
    ('code', """# Install the package from a local checkout unless it is importable already. In a fresh VM
# (Colab) copy or clone the repository first and run this notebook from its root, or set
# FEDJAX_LAB_SOURCE to the checkout folder; from a shell, `pip install -e .` in the checkout does the same.
import importlib.util
import os

if importlib.util.find_spec('fedjax_lab') is None:
  source = os.environ.get('FEDJAX_LAB_SOURCE', '.')
  if not os.path.isfile(os.path.join(source, 'pyproject.toml')):
    raise RuntimeError(f'fedjax_lab is not installed and {os.path.abspath(source)!r} is not a checkout of it: '
                       'run `pip install -e .` in a clone of the repository, or set FEDJAX_LAB_SOURCE.')
  get_ipython().run_line_magic('pip', f'install -q -e {source}')"""),
    ('code', """import sys
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import fedjax_lab
from fedjax_lab import aggregators, attacks, engine, topology
from fedjax_lab.algorithms import decentralized
from fedjax_lab.algorithms.fedavg import fedavg
from fedjax_lab.data import datasets, sampling
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.models import models
from fedjax_lab.privacy import inversion

%matplotlib inline
# CI sets FEDJAX_LAB_TOUR_SMALL=1: every size below shrinks so the whole notebook runs in seconds.
SMALL = os.environ.get('FEDJAX_LAB_TOUR_SMALL') == '1'
ROUNDS = 5 if SMALL else 60
print('python:', sys.executable)
print('jax', jax.__version__, jax.devices())"""),
    ('md', """## A tiny FedAvg loop
`fedavg(...)` returns an `Algorithm`: `init(params) -> state` and `step(state, round_inputs, rng) -> (state,
metrics)`. `engine.scan_rounds`, the loop every run of the package goes through, runs all rounds (cohort
sampling included) as one jitted `lax.scan`, and the test accuracy is recorded after every round."""),
    ('code', """def train(algorithm, model, dataset, rounds, clients_per_round, byzantine=None, seed=0):
  \"\"\"Runs `rounds` rounds in one compiled scan; returns the test accuracy after each round [rounds].\"\"\"
  data = FederatedData(*(jnp.asarray(a) for a in dataset.train))
  test_x, test_y = jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y)
  init_key, base_key = jax.random.split(jax.random.key(seed))
  state = algorithm.init(model.init(init_key))
  sampler = engine.cohort_sampler(data, clients_per_round, byzantine=byzantine)
  accuracy = lambda state: models.evaluate(model, state.params, test_x, test_y)['accuracy']
  _, (_, per_round) = engine.scan_rounds(algorithm, sampler, state, base_key, rounds, evaluate=(1, accuracy))
  return np.asarray(per_round)


def make_fedavg(model, dataset, **kwargs):
  return fedavg(model, optax.sgd(0.05), optax.sgd(1.0), local_epochs=2, batch_size=10,
                max_examples=dataset.train.max_examples, **kwargs)"""),
    ('md', """## 1. FedAvg: IID vs Non-IID clients
Digits (8x8, ships with scikit-learn) over 20 clients: an IID split vs McMahan's pathological split
where each client holds two label shards. The Non-IID run converges more slowly and less smoothly."""),
    ('code', """curves = {}
for partition, kwargs in [('iid', {}), ('shards', {'shards_per_client': 2})]:
  dataset = datasets.load_dataset('digits', num_clients=20, partition=partition, seed=0, **kwargs)
  model = models.get_model('mlp', dataset.input_shape, dataset.num_classes, hidden=(32,))
  curves[partition] = train(make_fedavg(model, dataset), model, dataset, ROUNDS, clients_per_round=5)

for name, acc in curves.items():
  plt.plot(np.arange(1, ROUNDS + 1), acc, label=name)
plt.xlabel('round'); plt.ylabel('test accuracy'); plt.title('FedAvg, 5 of 20 clients per round')
plt.legend(); plt.show()
print({k: round(float(v[-1]), 3) for k, v in curves.items()})"""),
    ('md', """## 2. Gossip: a ring vs the complete graph
No server: 8 nodes each keep a model and average with their neighbours through a mixing matrix W
(D-PSGD, Lian et al. 2017). The ring mixes slowly (small spectral gap), so the nodes' models disagree
for longer than on the complete graph."""),
    ('code', """nodes = 8
steps = 10 if SMALL else 150
dataset = datasets.load_dataset('digits', num_clients=nodes, partition='shards', seed=0, shards_per_client=2)
model = models.get_model('logistic_regression', dataset.input_shape, dataset.num_classes)
node_data = FederatedData(*(jnp.asarray(a) for a in dataset.train))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name in ('ring', 'complete'):
  topo = topology.make_topology(name, nodes)
  algorithm = decentralized.dpsgd(model, topo, learning_rate=0.5, batch_size=-1)
  state = algorithm.init(model.init(jax.random.key(0)))
  state, metrics = engine.scan_rounds(algorithm, engine.every_client_sampler(node_data), state, jax.random.key(1), steps)
  label = f'{name} (spectral gap {topo.spectral_gap:.2f})'
  axes[0].semilogy(np.asarray(metrics['consensus_error']), label=label)
  axes[1].plot(np.asarray(metrics['train_loss']), label=label)
axes[0].set(xlabel='step', ylabel='consensus error'); axes[1].set(xlabel='step', ylabel='mean local loss')
axes[0].legend(); plt.tight_layout(); plt.show()"""),
    ('md', """## 3. Byzantine clients: mean vs median
20% of the clients are Byzantine and send their update flipped and scaled by 4. The plain weighted mean
follows them; the coordinate-wise median (Yin et al. 2018) ignores them."""),
    ('code', """dataset = datasets.load_dataset('digits', num_clients=20, partition='iid', seed=0)
model = models.get_model('mlp', dataset.input_shape, dataset.num_classes, hidden=(32,))
byzantine = sampling.byzantine_mask(20, 0.2, seed=1)
clients_per_round = 10
runs = {} if SMALL else {'mean, no attack': make_fedavg(model, dataset)}
runs.update({
    'mean, sign flip': make_fedavg(model, dataset, transform=attacks.sign_flip(scale=4.0)),
    'median, sign flip': make_fedavg(model, dataset, transform=attacks.sign_flip(scale=4.0),
                                     aggregator=aggregators.AGGREGATORS['median'](clients_per_round=clients_per_round)),
})
for name, algorithm in runs.items():
  acc = train(algorithm, model, dataset, ROUNDS, clients_per_round, byzantine=byzantine)
  plt.plot(np.arange(1, ROUNDS + 1), acc, label=f'{name} ({acc[-1]:.2f})')
plt.xlabel('round'); plt.ylabel('test accuracy'); plt.title('20% Byzantine clients')
plt.legend(); plt.show()"""),
    ('md', """## 4. Deep Leakage from Gradients
A client sends the gradient of one example (FedSGD). The server knows the model and optimises a dummy
image and label until their gradient matches (Zhu et al. 2019), recovering the image."""),
    ('code', """dataset = datasets.load_dataset('digits', num_clients=1, partition='iid', seed=0)
x_true = jnp.asarray(dataset.test_x[:1]).clip(0, 1)
y_true = jnp.asarray(dataset.test_y[:1])
model = inversion.sigmoid_mlp(dataset.input_shape, dataset.num_classes, hidden=(32,))
params = model.init(jax.random.key(0))
simulate = inversion.make_observation_fn(model, params, 'fedsgd')
observed = simulate(x_true, jax.nn.one_hot(y_true, dataset.num_classes))
num_steps = 30 if SMALL else 300  # CI: a few Adam steps (L-BFGS's line search compiles slowly)
result = inversion.invert(simulate, observed, jax.random.key(1), batch_size=1, input_shape=dataset.input_shape,
                          num_classes=dataset.num_classes, optimizer='adam' if SMALL else 'lbfgs',
                          num_steps=num_steps, num_snapshots=3)
quality = inversion.reconstruction_quality(x_true, result.x, y_true, result.labels)
fig, axes = plt.subplots(1, 5, figsize=(10, 2.4))
axes[0].imshow(np.asarray(x_true[0]), cmap='gray'); axes[0].set_title(f'true ({int(y_true[0])})')
for ax, snapshot, step in zip(axes[1:4], result.history, result.history_steps):
  ax.imshow(np.clip(np.asarray(snapshot[0]), 0, 1), cmap='gray'); ax.set_title(f'step {int(step)}')
axes[4].semilogy(np.asarray(result.losses)); axes[4].set_title('gradient distance')
for ax in axes[:4]:
  ax.axis('off')
plt.tight_layout(); plt.show()
print(f'PSNR {quality.psnr:.1f} dB, label recovered: {bool(quality.label_accuracy == 1.0)}')"""),
    ('md', """## Where next
`experiments/fl_studies.py` reruns the communication-efficiency, Non-IID, compression and
unstable-client studies; `python -m experiments.run --config=configs/fedavg_mnist1d.py` trains from a
config; `docs/notes/fl_studies.md` has the measured tables."""),
]


def build() -> nbformat.NotebookNode:
  notebook = nbformat.v4.new_notebook()
  notebook.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
  notebook.metadata['colab'] = {'provenance': []}
  for kind, source in CELLS:
    cell = nbformat.v4.new_markdown_cell(source) if kind == 'md' else nbformat.v4.new_code_cell(source)
    notebook.cells.append(cell)
  for index, cell in enumerate(notebook.cells):
    cell['id'] = f'cell-{index:02d}'
  return notebook


def main():
  nbformat.write(build(), NOTEBOOK)
  print('wrote', NOTEBOOK)


if __name__ == '__main__':
  main()
