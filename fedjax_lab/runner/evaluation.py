"""Test-time metrics a config asks for beyond the model's own (`train.evaluate_state`).

  config.evaluation.global_train_loss  sum_k n_k f_k(w) / n over every training client, at the
                                       global model (the node average for gossip): the objective
                                       the FedAvg convergence theory bounds (Li et al. 2020).
  a backdoor attack (config.attack)    'backdoor_success': share of triggered test inputs whose true
                                       label is not the target that the model assigns the target.
  a least-squares data set with a      'loss_gap': f(w) - f* = 1/2 (w - w*)^T H (w - w*) exactly
  Hessian in its extras                (no float32 cancellation near the optimum).
"""

from __future__ import annotations

from typing import Callable

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import ml_collections

from fedjax_lab.models import models as models_lib

BACKDOOR_ATTACKS = ('backdoor', 'backdoor_boosted')


def _global_params(evaluates: str, params):
  if evaluates == 'nodes':
    return jax.tree.map(lambda p: jnp.mean(p, axis=0), params)
  return params


def extra_metrics_fn(config: ml_collections.ConfigDict, model: models_lib.Model, dataset, train, test_x, test_y,
                     evaluates: str) -> Callable | None:
  """A jitted `state -> {name: []}` of the extra metrics the config asks for, or None when none.

  Args:
    config: the run config.
    model: the model.
    dataset: the FederatedDataset (input shape, extras).
    train: FederatedData on the device (None when the training data stay on the host).
    test_x, test_y: the test set on the device.
    evaluates: the algorithm's `evaluates` ('global' or 'nodes').
  """
  parts = []
  evaluation = config.get('evaluation') or ml_collections.ConfigDict()
  if evaluation.get('global_train_loss', False):
    if train is None:
      raise ValueError("config.evaluation.global_train_loss needs the training data on the device; "
                       "set config.data_placement='device'.")
    mask = train.mask()

    def global_train_loss(params):
      losses = jax.vmap(lambda x, y, m: models_lib.batch_loss(model, params, x, y, m))(train.x, train.y, mask)
      counts = train.num_examples.astype(losses.dtype)
      return {'global_train_loss': jnp.sum(losses * counts) / jnp.sum(counts)}

    parts.append(global_train_loss)
  attack = config.get('attack') or ml_collections.ConfigDict({'name': 'none'})
  if attack.get('name', 'none') in BACKDOOR_ATTACKS:
    from fedjax_lab import attacks
    trigger = attacks.corner_trigger(tuple(dataset.input_shape), attack.get('trigger_size', 2),
                                      attack.get('trigger_value', 1.0))
    target = attack.get('target_label', 0)
    parts.append(lambda params: {'backdoor_success': attacks.backdoor_success(model, params, test_x, test_y, trigger,
                                                                              target)})
  extras = dataset.extras or {}
  if 'hessian' in extras and 'w_star' in extras:
    hessian = jnp.asarray(extras['hessian'], jnp.float32)
    w_star = jnp.asarray(extras['w_star'], jnp.float32)

    def loss_gap(params):
      w = ravel_pytree(params)[0]
      return {'loss_gap': 0.5 * (w - w_star) @ hessian @ (w - w_star)}

    parts.append(loss_gap)
  if not parts:
    return None

  @jax.jit
  def extra(state):
    params = _global_params(evaluates, state.params)
    out = {}
    for part in parts:
      out.update(part(params))
    return out

  return extra
