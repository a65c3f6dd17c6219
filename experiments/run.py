r"""Runs one experiment from a config file: the only module that defines flags.

  python -m experiments.run --config=configs/fedavg_mnist1d.py --workdir=runs/fedavg
  python -m experiments.run --config=configs/fedavg_mnist1d.py:smoke --workdir=/tmp/x \
      --config.rounds=50 --config.data.alpha=0.1
  python -m experiments.run --config=configs/fedavg_mnist1d.py:smoke --workdir=/tmp/k \
      --config.aggregator.name=krum --config.aggregator.f=1

Any field of any section can be set, including fields the config file does not list (a builder's
argument such as config.aggregator.f); the runner's registries refuse a field no builder takes,
naming it and listing the valid ones (fedjax_lab/runner/registry.py).

On CPU a run uses every core this process may run on (one JAX device per core, the cohort spread
over them): `taskset -c 0 python -m experiments.run ...` is a one-core run; --config.num_devices=N or
XLA_FLAGS=--xla_force_host_platform_device_count=N choose otherwise.

Several hosts (one process per host, or several processes on one machine for testing):

  python -m experiments.run --config=... --workdir=... \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

Under Slurm, Open MPI or on a Cloud TPU pod the cluster is read from the environment:

  srun python -m experiments.run --config=... --workdir=... --distributed_auto

A workdir belongs to one config and one process (`fedjax_lab.runner.workdir`): rerunning the same
command resumes (or reports that the run is complete), a larger --config.rounds continues it, another
config is refused with the differing fields listed; --overwrite deletes the workdir and starts afresh.

SIGTERM or SIGINT (Ctrl-C) stop the run at the next block boundary (after the `eval_every` rounds
being computed) with a checkpoint of the round reached, and exit with status 128 + the signal number
(143 for SIGTERM, 130 for SIGINT); rerunning the command resumes. A second signal kills at once.
"""

import logging as python_logging
import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fedjax_lab.runner import train
from fedjax_lab.runner import workdir
from fedjax_lab.runtime import devices
from fedjax_lab.runtime import distributed

# Unlocked and accepting new fields, so `--config.aggregator.f=1` can add a builder's argument; the
# fields a config lists keep their types. Unknown fields are refused by the runner, not here.
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/NAME.py[:arg]).',
                                          lock_config=False, accept_new_attributes=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder: config, metrics, checkpoints, summary.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for multi-process runs (jax.distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index in a multi-process run.')
_DISTRIBUTED_AUTO = flags.DEFINE_bool('distributed_auto', False,
                                      'Join a multi-process run described by the environment (Slurm, MPI, TPU pod).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                                'Delete everything in --workdir and start afresh (otherwise the workdir must hold '
                                'a run of the same config, which is resumed).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietCheckpointing(python_logging.Filter):
  """Drops orbax's per-save INFO lines (dozens per checkpoint); its warnings and errors still show."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname


def _stop_on_signals() -> tuple[threading.Event, list[int]]:
  """SIGTERM/SIGINT set the returned event (the runner checkpoints and stops); a second one kills."""
  stop, received = threading.Event(), []
  defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}

  def handle(signum, frame):
    del frame
    received.append(signum)
    stop.set()
    logging.warning('Received %s: saving a checkpoint after the rounds being computed, then stopping '
                    '(send it again to stop at once, without a checkpoint).', signal.Signals(signum).name)
    for other, default in defaults.items():
      signal.signal(other, default)

  for signum in defaults:
    signal.signal(signum, handle)
  return stop, received


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
  stop, received = _stop_on_signals()
  try:
    summary = train.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value, stop=stop)
  except (workdir.WorkdirConfigError, workdir.WorkdirLockedError) as refused:
    sys.exit(f'error: {refused}')  # a refusal, not a crash: the message says what to do, no traceback
  except train.RunInterrupted as interrupted:
    logging.warning('%s', interrupted)
    print(interrupted, file=sys.stderr)
    sys.exit(128 + (received[0] if received else signal.SIGTERM))
  final = summary['final']
  results = {k: v for k, v in final.items() if k.startswith(('test_', 'train_'))}
  if summary.get('already_complete'):
    logging.info('%s already holds the finished %d-round run of this config (nothing was run): %s',
                 _WORKDIR.value, summary['rounds'], results)
  else:
    logging.info('Finished %d rounds in %.1f s: %s', summary['rounds'], summary['seconds'], results)
  print({k: v for k, v in final.items() if k.startswith(('round', 'test_', 'train_'))})


if __name__ == '__main__':
  app.run(main)
