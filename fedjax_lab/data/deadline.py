"""A round deadline: clients whose simulated compute time exceeds it are dropped (stragglers).

A sampled client's time this round is proportional to its work, num_examples x local_epochs, times
a log-normal speed factor drawn afresh every round (devices differ and are busy at random times):

  time_i = seconds_per_example * local_epochs * n_i * exp(speed_sigma * z_i),   z_i ~ N(0, 1).

The participation mask `time_i <= deadline` joins the dropout mask of `sampling.sample_round`.
Because large clients are slower on average, a deadline drops them more often and shifts the
server's example weighting towards small clients (the bias FedAvg's weighting cannot undo).
Keys come from the round key and the client's global id, so the draws do not depend on placement.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fedjax_lab.data.sampling import RoundInputs, cohort_num_examples


def validate_deadline(deadline: float, field: str = 'config.deadline') -> None:
  if not (deadline > 0) or math.isnan(deadline):
    raise ValueError(f'{field}={deadline} must be > 0 (seconds of simulated time; use inf for no deadline).')


def simulated_times(rng: jax.Array, num_examples: jax.Array, client_ids: jax.Array, local_epochs: int = 1,
                    seconds_per_example: float = 1e-3, speed_sigma: float = 0.5) -> jax.Array:
  """Simulated local-training time of each cohort client.

  Args:
    rng: this round's key for the speed draws.
    num_examples: [C] examples per client.
    client_ids: [C] global client ids.
    local_epochs: E.
    seconds_per_example: time of one example on a device of median speed.
    speed_sigma: standard deviation of the log speed factor (0: time proportional to n_i).

  Returns:
    [C] float32 seconds.
  """
  if speed_sigma < 0:
    raise ValueError(f'config.speed_sigma={speed_sigma} must be >= 0.')
  z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i)))(client_ids)
  work = num_examples.astype(jnp.float32) * local_epochs * seconds_per_example
  return work * jnp.exp(speed_sigma * z)


def deadline_mask(times: jax.Array, deadline: float) -> jax.Array:
  """[C] bool: True for clients that finish by the deadline."""
  validate_deadline(deadline)
  return times <= deadline


def apply_deadline(inputs: RoundInputs, rng: jax.Array, deadline: float, local_epochs: int = 1,
                   seconds_per_example: float = 1e-3, speed_sigma: float = 0.5) -> RoundInputs:
  """Drops the cohort's stragglers: participation &= (simulated time <= deadline)."""
  validate_deadline(deadline)
  times = simulated_times(rng, cohort_num_examples(inputs), inputs.client_ids, local_epochs, seconds_per_example,
                          speed_sigma)
  return inputs._replace(participation=inputs.participation & (times <= deadline))
