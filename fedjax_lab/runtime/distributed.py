"""Multi-process set-up: the same program on several hosts through `jax.distributed`.

Every process runs the same config; `jax.devices()` then lists the devices of all processes and
the 'clients' mesh spans them, so cohort arrays are split across hosts and the aggregation's
collectives cross the network. On CPU the collectives go through gloo.

Two ways in:
  `initialize(address, num_processes, process_id)`  explicit, for any launcher (or localhost tests);
  `initialize_from_environment()`                   lets `jax.distributed` read the cluster from the
      environment: Slurm (`srun`: SLURM_JOB_ID, SLURM_NTASKS, SLURM_PROCID, ...), Open MPI /
      mpi4py, and Cloud TPU pods and GKE, so a batch script passes no addresses at all.
"""

from __future__ import annotations

import jax


def initialize(coordinator_address: str, num_processes: int | None, process_id: int | None,
               local_device_ids=None) -> None:
  """Connects this process to the others; call before any other JAX call.

  Args:
    coordinator_address: 'host:port' of process 0.
    num_processes: total processes (>= 1).
    process_id: this process' index in [0, num_processes).
    local_device_ids: optional subset of this host's devices.
  """
  if num_processes is None or process_id is None:
    raise ValueError('--num_processes and --process_id are required with --coordinator_address.')
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f'--process_id={process_id} must be in [0, --num_processes={num_processes}).')
  # Must not touch a backend before initialize(); the setting only matters for CPU devices.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id, local_device_ids=local_device_ids)


def initialize_from_environment() -> None:
  """Connects this process using the cluster that `jax.distributed` detects (Slurm, MPI, TPU pod).

  Raises:
    RuntimeError: no supported cluster environment was found (then pass the explicit flags).
  """
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize()
  except ValueError as error:  # jax's own message ("coordinator_address should be defined") is cryptic
    raise RuntimeError(
        f'--distributed_auto found no cluster in the environment ({error}); supported: Slurm (srun), '
        'Open MPI (mpirun), Cloud TPU pods, GKE. Otherwise pass --coordinator_address, --num_processes and '
        '--process_id.') from error
