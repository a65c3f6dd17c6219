r"""Runs one experiment from a config file: the only module that defines flags.

  python -m experiments.run --config=configs/fedavg_mnist1d.py --workdir=runs/fedavg
  python -m experiments.run --config=configs/fedavg_mnist1d.py:smoke --workdir=/tmp/x \
      --config.rounds=50 --config.data.alpha=0.1

On CPU a run uses every core this process may run on (one JAX device per core, the cohort spread
over them): `taskset -c 0 python -m experiments.run ...` is a one-core run; --config.num_devices=N or
XLA_FLAGS=--xla_force_host_platform_device_count=N choose otherwise.

Several hosts (one process per host, or several processes on one machine for testing):

  python -m experiments.run --config=... --workdir=... \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

Under Slurm, Open MPI or on a Cloud TPU pod the cluster is read from the environment:

  srun python -m experiments.run --config=... --workdir=... --distributed_auto
"""

import logging as python_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fedjax_lab.runner import train
from fedjax_lab.runtime import devices
from fedjax_lab.runtime import distributed

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/NAME.py[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder: config, metrics, checkpoints, summary.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for multi-process runs (jax.distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index in a multi-process run.')
_DISTRIBUTED_AUTO = flags.DEFINE_bool('distributed_auto', False,
                                      'Join a multi-process run described by the environment (Slurm, MPI, TPU pod).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietCheckpointing(python_logging.Filter):
  """Drops orbax's per-save INFO lines (dozens per checkpoint); its warnings and errors still show."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietCheckpointing())
  if _COORDINATOR.value and _DISTRIBUTED_AUTO.value:
    raise app.UsageError('Pass either --distributed_auto or --coordinator_address, not both.')
  if not (_DISTRIBUTED_AUTO.value or _COORDINATOR.value):  # multi-process runs keep one CPU device each
    devices.use_all_cores(_CONFIG.value.get('num_devices', 0))  # before JAX starts: a CPU device per core
  if _DISTRIBUTED_AUTO.value:
    distributed.initialize_from_environment()
  elif _COORDINATOR.value:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  summary = train.run(_CONFIG.value, _WORKDIR.value)
  final = summary['final']
  logging.info('Finished %d rounds in %.1f s: %s', summary['rounds'], summary['seconds'],
               {k: v for k, v in final.items() if k.startswith(('test_', 'train_'))})
  print({k: v for k, v in final.items() if k.startswith(('round', 'test_', 'train_'))})


if __name__ == '__main__':
  app.run(main)
