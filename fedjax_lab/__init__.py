"""fedjax_lab: data-parallel, asynchronous, decentralized and federated learning as one JAX engine."""

from fedjax_lab import aggregators, data, models, transforms

__version__ = '0.1.0'
