"""fedjax_lab: data-parallel, asynchronous, decentralized and federated learning as one JAX engine.

A notebook writes `fl.aggregators.median`, `fl.algorithms.fedavg`, `fl.engine.scan_rounds(...)`,
`fl.runner.run(config, workdir)`,
`fl.topology.make_topology`, `fl.privacy.accounting`, `fl.attacks.sign_flip`. (`fedjax_lab.runtime`, which
needs Ray, is imported on its own.)
"""

from fedjax_lab import cohort
from fedjax_lab import aggregators, algorithms, attacks, clients, data, models, privacy, systems, topology, transforms
from fedjax_lab import engine, runner

__version__ = '0.1.0'
