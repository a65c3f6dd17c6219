from fedjax_lab.algorithms.base import Algorithm, ServerState
from fedjax_lab.algorithms.fedavg import fedavg, fedsgd
from fedjax_lab.algorithms.scaffold import scaffold
from fedjax_lab.algorithms.decentralized import (DecentralizedState, dpsgd, exact_diffusion, gradient_tracking,
                                                 local_sgd_gossip, run_steps)
from fedjax_lab.algorithms.async_ps import (AsyncConfig, AsyncResult, AsyncSchedule, async_schedule, async_sgd,
                                            damped_async_sgd, fedbuff, run_async, simulate, stale_synchronous)
from fedjax_lab.algorithms.data_parallel import (DataParallelState, LeastSquares, Shards, data_parallel_gd,
                                                 least_squares_loss, least_squares_problem, replicate_data,
                                                 run_iterations, shard_data, solve_least_squares)
