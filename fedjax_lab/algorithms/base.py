"""The algorithm interface shared by every paradigm: a pair of pure functions around a state."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

PyTree = Any


class Algorithm(NamedTuple):
  """`init(params) -> State`; `step(state, round_inputs, rng) -> (State, metrics dict of scalars)`.

  `State` is a pytree (NamedTuple) of arrays holding everything that changes between rounds, so a
  checkpoint of the state is a checkpoint of the run, and `step` can be scanned over rounds.

  `lazy_inputs`: True when `step` gains from lazy `RoundInputs` (data None, the population and the
  cohort's ids; see `fedjax_lab.data.sampling`) because it reads each client's rows inside its
  client loop, so the round's memory does not grow with the cohort. The runner then samples
  lazily; an algorithm with False always receives gathered inputs.
  """

  init: Callable[[PyTree], PyTree]
  step: Callable[[PyTree, Any, jax.Array], tuple[PyTree, dict]]
  name: str = ''
  lazy_inputs: bool = False


class ServerState(NamedTuple):
  """Server-side state of the federated algorithms.

  Attributes:
    params: global model parameters.
    opt_state: server optimizer state (optax).
    aggregator_state: state of the aggregator (e.g. centered clipping's center).
    transform_state: state of the update transforms (e.g. error feedback).
    round: [] int32 rounds completed.
    extra: algorithm-specific state (SCAFFOLD's control variates), () when unused.
  """

  params: PyTree
  opt_state: PyTree
  aggregator_state: PyTree
  transform_state: PyTree
  round: jax.Array
  extra: PyTree = ()
