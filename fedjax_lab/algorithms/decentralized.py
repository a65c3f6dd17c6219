"""Decentralized training without a server: D-PSGD and its orders, local steps, gradient tracking,
exact diffusion.

Every node i keeps its own model x_i; the models are stacked on a leading node axis (leaves
[N, ...]) and node i trains on client i of a `FederatedData` (x [N, M, ...]). One step, with W_t the
mixing matrix of step t (see `fedjax_lab.topology`) and g_i(x) a stochastic gradient of node i's
loss f_i on a fresh mini-batch (or its full batch):

  consensus (D-PSGD, Lian et al. 2017)       x <- W x - a g(x)
  combine-then-adapt ('cta')                 x <- W x - a g(W x)
  adapt-then-combine ('atc', diffusion)      x <- W (x - a g(x))
  local steps then gossip                    H local SGD steps on every node, then x <- W x
  gradient tracking (DIGing; Nedic, Olshevsky and Shi 2017; Qu and Li 2018)
                                             y <- W y + g(x) - g(x_prev)   (y_{-1} = g_{-1} = 0)
                                             x <- W x - a y
  exact diffusion (Yuan, Ying, Zhao and Sayed 2019), with W' = (I + W) / 2
                                             psi <- x - a g(x)
                                             x <- W' (psi + x - psi_prev)

With a constant step the first three converge, on heterogeneous data, to a neighbourhood of the
optimum whose size grows with a and with the spread of the local gradients; gradient tracking and
exact diffusion remove that bias and reach the exact optimum with full-batch gradients.

Every algorithm here is an `Algorithm` with `inputs='every_client'` (node i is client i of the data, every
step) and `evaluates='nodes'`: `init(params) -> DecentralizedState`, `step(state, RoundInputs, rng) ->
(state, metrics)`, run by `fedjax_lab.engine.scan_rounds` with `engine.every_client_sampler(data)`. The
nodes' gradients go through `fedjax_lab.clients.placement` like every other per-client computation
(config.placement: vmap, scan, chunked, or spread over a device mesh).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.clients import placement as placement_lib
from fedjax_lab.data import sampling
from fedjax_lab.data.federated import FederatedData
from fedjax_lab.models import models as models_lib
from fedjax_lab.topology import gossip as gossip_lib
from fedjax_lab.topology.mixing import Topology

PyTree = Any
LearningRate = float | Callable[[jax.Array], jax.Array]
ORDERS = ('consensus', 'cta', 'atc')


class DecentralizedState(NamedTuple):
  """State of a decentralized run.

  Attributes:
    params: leaves [N, ...], node i's model in row i.
    tracker: gradient tracking: y [N, ...], the running estimate of the average gradient;
      exact diffusion: psi of the previous step [N, ...]; () for the D-PSGD family.
    prev_grads: gradient tracking: the previous step's local gradients [N, ...]; () otherwise.
    round: [] int32 steps done (the runner's name for it).
  """

  params: PyTree
  tracker: PyTree
  prev_grads: PyTree
  round: jax.Array

  @property
  def average_params(self) -> PyTree:
    """mean_i x_i: the model the nodes agree on at consensus (leaves [...])."""
    return gossip_lib.node_average(self.params)


# ---------------------------------------------------------------------------------------------
# Shared pieces.


def replicate(params: PyTree, num_nodes: int) -> PyTree:
  """One model's params -> node-stacked params, leaves [N, ...] (every node starts equal)."""
  return jax.tree.map(lambda p: jnp.broadcast_to(p, (num_nodes,) + p.shape), params)


def node_batches(data: FederatedData, rng: jax.Array, batch_size: int):
  """Every node's mini-batch: node i draws batch_size of its rows uniformly, with replacement.

  Node i's key is fold_in(rng, i), so the draw does not depend on how nodes are placed.

  Args:
    data: FederatedData, x [N, M, ...], y [N, M], num_examples [N].
    rng: key of this step.
    batch_size: B, or -1 for every real row (mask from num_examples).

  Returns:
    (x [N, B, ...], y [N, B], mask [N, B] bool); B = M for the full batch.
  """
  if batch_size == -1:
    return data.x, data.y, data.mask()
  num_nodes = data.num_examples.shape[0]
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(num_nodes))
  counts = jnp.asarray(data.num_examples)
  indices = jax.vmap(lambda key, n: jax.random.randint(key, (batch_size,), 0, jnp.maximum(n, 1)))(keys, counts)
  take = lambda a: jnp.take_along_axis(a, indices.reshape(indices.shape + (1,) * (a.ndim - 2)), axis=1)
  mask = jnp.broadcast_to((counts > 0)[:, None], indices.shape)
  return take(jnp.asarray(data.x)), take(jnp.asarray(data.y)), mask


def node_gradients(model: models_lib.Model, params: PyTree, batches,
                   placement: placement_lib.Placement = placement_lib.Placement()) -> tuple[jax.Array, PyTree]:
  """Every node's loss and gradient at its own parameters, mapped over nodes by the placement.

  Args:
    model: the model.
    params: leaves [N, ...].
    batches: (x [N, B, ...], y [N, B], mask [N, B]) from `node_batches`.
    placement: how the map over nodes runs (default: the backend's best single-device strategy).

  Returns:
    (losses [N], grads with leaves [N, ...]).
  """
  value_and_grad = jax.value_and_grad(functools.partial(models_lib.batch_loss, model))

  def one_node(shared, node):
    del shared
    node_params, x, y, mask = node
    return value_and_grad(node_params, x, y, mask)

  return placement.map_clients(one_node, (), (params,) + tuple(batches))


def _learning_rate(learning_rate: LearningRate, step: jax.Array) -> jax.Array:
  if callable(learning_rate):
    return jnp.asarray(learning_rate(step), jnp.float32)
  return jnp.asarray(learning_rate, jnp.float32)


def _axpy(alpha, x: PyTree, y: PyTree) -> PyTree:
  """alpha * x + y per leaf, in the leaf's dtype."""
  return jax.tree.map(lambda a, b: (alpha.astype(a.dtype) * a + b).astype(b.dtype), x, y)


def _node_data(inputs: sampling.RoundInputs) -> FederatedData:
  """The nodes' data from every-client RoundInputs (`engine.every_client_sampler`): node i = client i."""
  return sampling.materialize(inputs).data


def _tree_bytes(tree: PyTree) -> int:
  return int(sum(np.prod(leaf.shape[1:]) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)))


def validate(topology: Topology, learning_rate: LearningRate, batch_size: int, allow_disconnected: bool,
             local_steps: int = 1) -> None:
  """Raises ValueError (naming the config field) for settings that cannot train; warns on a
  disconnected graph when `allow_disconnected`."""
  if not isinstance(topology, Topology):
    raise ValueError(f'topology must be a fedjax_lab.topology.Topology, got {type(topology).__name__}; '
                     'build one with fl.topology.make_topology(name, num_nodes).')
  if not callable(learning_rate) and not (np.isfinite(learning_rate) and learning_rate >= 0):
    raise ValueError(f'config.algorithm.learning_rate={learning_rate} must be a finite number >= 0.')
  if batch_size != -1 and batch_size < 1:
    raise ValueError(f'config.algorithm.batch_size={batch_size} must be >= 1 (or -1 for full batch).')
  if local_steps < 1:
    raise ValueError(f'config.algorithm.local_steps={local_steps} must be >= 1.')
  if not topology.connected:
    sizes = np.bincount(topology.components)
    message = (f'topology {topology.name!r} is disconnected ({sizes.size} components of sizes '
               f'{sizes.tolist()}): the components never exchange information and converge to '
               'different models.')
    if not allow_disconnected:
      raise ValueError(message + ' Pass allow_disconnected=True (config.topology.allow_disconnected) '
                       'to train anyway.')
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _check_nodes(data: FederatedData, num_nodes: int) -> None:
  found = data.num_examples.shape[0]
  if found != num_nodes:
    raise ValueError(f'the node data has {found} clients but the topology has {num_nodes} nodes; '
                     'partition the data into exactly config.topology.num_nodes clients.')


def _metrics(losses, params, lr, bytes_sent) -> dict:
  """The shared metric names (`algorithms.base.METRICS`) plus consensus error and learning rate."""
  num_nodes = losses.shape[0]
  return {
      'train_loss': jnp.mean(losses),
      'participants': jnp.asarray(num_nodes, jnp.int32),
      'bytes_up': jnp.asarray(bytes_sent, jnp.float32),  # over the gossip links; no server
      'bytes_down': jnp.zeros((), jnp.float32),
      'consensus_error': gossip_lib.consensus_error(params),
      'learning_rate': lr,
  }


def _make_init(num_nodes: int, kind: str):
  def init(params: PyTree, stacked: bool = False) -> DecentralizedState:
    """params: one model (replicated to every node) or, with stacked=True, leaves [N, ...]."""
    params = params if stacked else replicate(params, num_nodes)
    params = jax.tree.map(jnp.asarray, params)
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    tracker = {'tracking': zeros, 'exact_diffusion': lambda: params}.get(kind, lambda: ())()
    prev_grads = zeros() if kind == 'tracking' else ()
    return DecentralizedState(params, tracker, prev_grads, jnp.zeros((), jnp.int32))

  return init


# ---------------------------------------------------------------------------------------------
# Algorithms.


def dpsgd(
    model: models_lib.Model,
    topology: Topology,
    learning_rate: LearningRate,
    batch_size: int = -1,
    order: str = 'consensus',
    local_steps: int = 1,
    gossip_impl: str = 'auto',
    mesh=None,
    placement: str = 'auto',
    chunk_size: int | None = None,
    allow_disconnected: bool = False,
    name: str | None = None,
) -> Algorithm:
  """D-PSGD in the consensus, combine-then-adapt or adapt-then-combine order.

  Args:
    model: the model every node trains.
    topology: the communication graph and its mixing matrices (N nodes).
    learning_rate: a, a float or `round -> a`.
    batch_size: mini-batch per node and local step (-1: full local batch, deterministic).
    order: 'consensus' (x <- Wx - a g(x)), 'cta' (x <- Wx - a g(Wx)) or 'atc' (x <- W(x - a g(x))).
    local_steps: H local SGD steps before each gossip (order 'atc' only; H = 1 is plain 'atc').
    gossip_impl: 'auto', 'dense', 'sparse' or 'ppermute' (see `fedjax_lab.topology.make_gossip`).
    mesh: device mesh: the nodes' gradients are spread over its 'clients' axis (and gossip_impl='ppermute'
      exchanges over it).
    placement, chunk_size: how the nodes' gradients are mapped (`fedjax_lab.clients.placement`).
    allow_disconnected: train on a disconnected graph (with a warning) instead of refusing.
    name: reported name.

  Returns:
    Algorithm: init(params, stacked=False) -> DecentralizedState; step(state, RoundInputs of every
    client in order (N clients), rng) -> (state, metrics).
  """
  if order not in ORDERS:
    raise ValueError(f'Unknown config.algorithm.order={order!r}; choose one of {ORDERS}.')
  validate(topology, learning_rate, batch_size, allow_disconnected, local_steps)
  if local_steps > 1 and order != 'atc':
    raise ValueError(f"config.algorithm.local_steps={local_steps} > 1 needs order='atc' (local steps, "
                     f'then gossip); got order={order!r}.')
  gossip = gossip_lib.make_gossip(topology, gossip_impl, mesh)
  nodes = placement_lib.make_placement(placement, chunk_size, mesh)
  num_nodes = topology.num_nodes

  def step(state: DecentralizedState, inputs, rng):
    data = _node_data(inputs)
    _check_nodes(data, num_nodes)
    lr = _learning_rate(learning_rate, state.round)
    x = state.params
    if order == 'consensus':
      losses, grads = node_gradients(model, x, node_batches(data, rng, batch_size), nodes)
      new_x = _axpy(-lr, grads, gossip.mix(x, state.round))
    elif order == 'cta':
      mixed = gossip.mix(x, state.round)
      losses, grads = node_gradients(model, mixed, node_batches(data, rng, batch_size), nodes)
      new_x = _axpy(-lr, grads, mixed)
    else:
      def local_step(params, key):
        losses, grads = node_gradients(model, params, node_batches(data, key, batch_size), nodes)
        return _axpy(-lr, grads, params), losses

      if local_steps == 1:  # the same draw as the other orders, so 'atc' and 'consensus' compare
        adapted, losses = local_step(x, rng)
      else:
        keys = jax.vmap(lambda h: jax.random.fold_in(rng, h))(jnp.arange(local_steps))
        adapted, all_losses = jax.lax.scan(local_step, x, keys)
        losses = jnp.mean(all_losses, axis=0)
      new_x = gossip.mix(adapted, state.round)
    metrics = _metrics(losses, new_x, lr, gossip.num_links * _tree_bytes(x))
    return DecentralizedState(new_x, state.tracker, state.prev_grads, state.round + 1), metrics

  default = 'dpsgd' if order == 'consensus' else f'dpsgd_{order}'
  if local_steps > 1:
    default = f'local{local_steps}_gossip'
  return Algorithm(_make_init(num_nodes, 'dpsgd'), step, name or default, evaluates='nodes', inputs='every_client')


def local_sgd_gossip(model: models_lib.Model, topology: Topology, learning_rate: LearningRate,
                     batch_size: int, local_steps: int, **kwargs) -> Algorithm:
  """Local steps then gossip (Koloskova et al. 2020): H SGD steps per node, then x <- W x."""
  return dpsgd(model, topology, learning_rate, batch_size, order='atc', local_steps=local_steps, **kwargs)


def gradient_tracking(
    model: models_lib.Model,
    topology: Topology,
    learning_rate: LearningRate,
    batch_size: int = -1,
    gossip_impl: str = 'auto',
    mesh=None,
    placement: str = 'auto',
    chunk_size: int | None = None,
    allow_disconnected: bool = False,
    name: str = 'gradient_tracking',
) -> Algorithm:
  """Gradient tracking (DIGing): nodes move along y, a gossiped estimate of the average gradient.

  y_k = W y_{k-1} + g(x_k) - g(x_{k-1}) with y_{-1} = g(x_{-1}) = 0 (so y_0 = g(x_0)), then
  x_{k+1} = W x_k - a y_k. Gossip preserves mean_i y_i = mean_i g_i(x_i), so at a fixed point
  every node sits at a stationary point of the average loss: no heterogeneity bias. Each step
  sends two models per link (x and y).

  Args: as `dpsgd` (W may be a time-varying schedule).

  Returns:
    Algorithm over DecentralizedState (tracker = y, prev_grads = g(x_{k-1})).
  """
  validate(topology, learning_rate, batch_size, allow_disconnected)
  gossip = gossip_lib.make_gossip(topology, gossip_impl, mesh)
  nodes = placement_lib.make_placement(placement, chunk_size, mesh)
  num_nodes = topology.num_nodes

  def step(state: DecentralizedState, inputs, rng):
    data = _node_data(inputs)
    _check_nodes(data, num_nodes)
    lr = _learning_rate(learning_rate, state.round)
    losses, grads = node_gradients(model, state.params, node_batches(data, rng, batch_size))
    correction = jax.tree.map(jnp.subtract, grads, state.prev_grads)
    # y_{-1} = 0 in the state, so the first step gives y_0 = g(x_0) whatever W is.
    tracker = jax.tree.map(jnp.add, gossip.mix(state.tracker, state.round - 1), correction)
    new_x = _axpy(-lr, tracker, gossip.mix(state.params, state.round))
    metrics = _metrics(losses, new_x, lr, 2 * gossip.num_links * _tree_bytes(state.params))
    return DecentralizedState(new_x, tracker, grads, state.round + 1), metrics

  return Algorithm(_make_init(num_nodes, 'tracking'), step, name, evaluates='nodes', inputs='every_client')


def exact_diffusion(
    model: models_lib.Model,
    topology: Topology,
    learning_rate: LearningRate,
    batch_size: int = -1,
    gossip_impl: str = 'auto',
    mesh=None,
    placement: str = 'auto',
    chunk_size: int | None = None,
    allow_disconnected: bool = False,
    name: str = 'exact_diffusion',
) -> Algorithm:
  """Exact diffusion: adapt, correct, combine with W' = (I + W) / 2.

  psi_k = x_k - a g(x_k); phi_k = psi_k + x_k - psi_{k-1} (psi_{-1} = x_0, so the first step is
  plain diffusion); x_{k+1} = W' phi_k. Needs a symmetric W (the theory's W' is positive
  semi-definite).

  Args: as `dpsgd`.

  Returns:
    Algorithm over DecentralizedState (tracker = psi_{k-1}).
  """
  validate(topology, learning_rate, batch_size, allow_disconnected)
  if not np.allclose(topology.mixing, np.swapaxes(topology.mixing, -1, -2)):
    raise ValueError(f'exact_diffusion needs a symmetric mixing matrix; {topology.name!r} is not '
                     '(use gradient_tracking for directed schedules).')
  gossip = gossip_lib.make_gossip(topology, gossip_impl, mesh)
  nodes = placement_lib.make_placement(placement, chunk_size, mesh)
  num_nodes = topology.num_nodes

  def step(state: DecentralizedState, inputs, rng):
    data = _node_data(inputs)
    _check_nodes(data, num_nodes)
    lr = _learning_rate(learning_rate, state.round)
    x = state.params
    losses, grads = node_gradients(model, x, node_batches(data, rng, batch_size), nodes)
    psi = _axpy(-lr, grads, x)
    phi = jax.tree.map(lambda p, xk, prev: p + xk - prev, psi, x, state.tracker)
    mixed = gossip.mix(phi, state.round)
    new_x = jax.tree.map(lambda a, b: 0.5 * (a + b), phi, mixed)
    metrics = _metrics(losses, new_x, lr, gossip.num_links * _tree_bytes(x))
    return DecentralizedState(new_x, psi, state.prev_grads, state.round + 1), metrics

  return Algorithm(_make_init(num_nodes, 'exact_diffusion'), step, name, evaluates='nodes', inputs='every_client')


ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    'dpsgd': dpsgd,
    'local_sgd_gossip': local_sgd_gossip,
    'gradient_tracking': gradient_tracking,
    'exact_diffusion': exact_diffusion,
}


# ---------------------------------------------------------------------------------------------
# Running and evaluating.


def evaluate_nodes(model: models_lib.Model, params: PyTree, x: jax.Array, y: jax.Array) -> dict:
  """Every node's model on one shared set: params leaves [N, ...], x [B, ...], y [B] -> {name: [N]}."""
  return jax.vmap(lambda p: models_lib.evaluate(model, p, x, y))(params)


def global_loss(model: models_lib.Model, params: PyTree, data: FederatedData) -> jax.Array:
  """f(x) = (1/N) sum_i f_i(x), f_i node i's full-batch mean loss; params of one model."""
  losses = jax.vmap(lambda x, y, m: models_lib.batch_loss(model, params, x, y, m))(
      jnp.asarray(data.x), jnp.asarray(data.y), data.mask())
  return jnp.mean(losses)
