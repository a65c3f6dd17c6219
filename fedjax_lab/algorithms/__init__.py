from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.algorithms.decentralized import (DecentralizedState, dpsgd, exact_diffusion, gradient_tracking,
                                                 local_sgd_gossip, run_steps)
