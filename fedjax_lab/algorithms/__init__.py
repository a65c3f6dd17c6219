from fedjax_lab.algorithms.base import EVALUATES, INPUTS, METRICS, Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.algorithms.decentralized import (DecentralizedState, dpsgd, exact_diffusion, gradient_tracking,
                                                 local_sgd_gossip)
from fedjax_lab.algorithms.async_ps import (Arrival, AsyncConfig, AsyncResult, AsyncSchedule, AsyncState,
                                            arrival_sampler, async_schedule, async_server, async_sgd,
                                            damped_async_sgd, fedbuff, run_async, simulate, stale_synchronous)
from fedjax_lab.algorithms.data_parallel import (DataParallelState, LeastSquares, data_parallel_gd,
                                                 least_squares_loss, least_squares_problem, replicate_data,
                                                 shard_data, solve_least_squares, worker_arrays)
