"""The algorithm contract shared by every paradigm: a pair of pure functions around a state.

Every training paradigm of the package (the FedAvg family, SCAFFOLD, data-parallel gradient descent,
the simulated asynchronous parameter server and FedBuff, and the decentralized gossip algorithms) is
an `Algorithm`, run by the one round loop `fedjax_lab.engine.scan_rounds` over the `RoundInputs` a
`fedjax_lab.engine.Sampler` draws:

  init(params) -> State                         params: one model's parameters
  step(State, RoundInputs, key) -> (State, metrics)

Every State is a pytree (NamedTuple) of arrays with at least `params` and `round` ([] int32 rounds
done), so a checkpoint of the state is a checkpoint of the run. Every step reports the same metric
names where they apply (METRICS); an algorithm adds its own (e.g. 'consensus_error', 'staleness').
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

PyTree = Any

# What the runner evaluates on the test set, declared by the algorithm (never guessed from the state):
#   'global'  state.params is one model (a server's, or the single model of data-parallel GD).
#   'nodes'   state.params has leaves [N, ...], one model per node: evaluated at the node average and
#             per node (mean and worst node).
EVALUATES = ('global', 'nodes')

# Which RoundInputs the algorithm consumes, declared by the algorithm; the runner builds the matching
# `fedjax_lab.engine.Sampler`:
#   'cohort'        a sampled cohort of clients (fixed size or Poisson, with dropouts): the FedAvg family.
#   'every_client'  every client in order, every round: data-parallel workers, gossip nodes.
#   'arrivals'      one arriving gradient per round from a simulated schedule: the asynchronous server.
INPUTS = ('cohort', 'every_client', 'arrivals')

# Metric names every algorithm reports with the same meaning.
METRICS = {
    'train_loss': 'example-weighted mean training loss of the clients (workers, nodes) that reported this '
                  'round, at the parameters they trained from; NaN when nobody reported',
    'participants': 'clients (workers, nodes) whose update reached the server (or their neighbours)',
    'bytes_up': 'bytes sent towards the server (or over the gossip links) this round',
    'bytes_down': 'bytes sent from the server to the clients this round (0 without a server)',
}


class Algorithm(NamedTuple):
  """`init(params) -> State`; `step(state, round_inputs, rng) -> (State, metrics dict of scalars)`.

  Attributes:
    init: one model's params -> State (a NamedTuple pytree with `params` and `round`).
    step: (State, RoundInputs, key) -> (State, {name: [] array}); jit- and scan-friendly.
    name: reported name.
    lazy_inputs: True when `step` gains from lazy `RoundInputs` (data None, the population and the
      cohort's ids; see `fedjax_lab.data.sampling`) because it reads each client's rows inside its
      client loop, so the round's memory does not grow with the cohort. The sampler then leaves
      the cohort lazy; an algorithm with False always receives gathered inputs.
    evaluates: 'global' or 'nodes' (see EVALUATES).
    inputs: 'cohort', 'every_client' or 'arrivals' (see INPUTS).
  """

  init: Callable[[PyTree], PyTree]
  step: Callable[[PyTree, Any, jax.Array], tuple[PyTree, dict]]
  name: str = ''
  lazy_inputs: bool = False
  evaluates: str = 'global'
  inputs: str = 'cohort'


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
