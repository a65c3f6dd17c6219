"""The experiment runner: `run(config, workdir)` and the config builders."""

from fedjax_lab.runner.train import RunDivergedError, evaluate_batched, run
