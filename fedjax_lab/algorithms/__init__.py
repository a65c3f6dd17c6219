from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
