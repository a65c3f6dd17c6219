"""fedjax_lab: data-parallel, asynchronous, decentralized and federated learning as one JAX engine.

A notebook writes `fl.aggregators.median`, `fl.algorithms.fedavg`, `fl.runner.run(config, workdir)`.
"""

from fedjax_lab import aggregators, algorithms, clients, data, models, transforms
from fedjax_lab import runner

__version__ = '0.1.0'
