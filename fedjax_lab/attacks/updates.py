"""Model-poisoning attacks: Transforms that replace the Byzantine clients' rows of the update stack.

Each attack reads `ctx.byzantine` [C] (who the adversary controls) and `ctx.weights` [C] (who is
present: weight 0 means dropped out or padding). Honest rows pass through unchanged. Attacks
that use statistics of the honest updates (ALIE, IPM, mimic) are *omniscient*: they see every
present honest update of the round, the strongest (and usual) threat model in the papers.
Which clients are Byzantine is data, so one compiled round serves every Byzantine fraction.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from fedjax_lab import cohort
from fedjax_lab.cohort import RoundContext
from fedjax_lab.transforms.base import Transform, stateless


def _rows(mask, leaf):
  return mask.reshape((-1,) + (1,) * (leaf.ndim - 1))


def replace_byzantine(updates, malicious, byzantine):
  """Rows of `updates` where byzantine [C] is True take `malicious` (leaves [C, ...] or [...])."""
  return jax.tree.map(
      lambda u, m: jnp.where(_rows(byzantine, u), jnp.broadcast_to(m, u.shape).astype(u.dtype), u),
      updates, malicious)


def _gathered_attack(fn):
  """Builds a stateless Transform from `fn(updates, ctx) -> malicious` on the gathered stack."""
  def apply(updates, ctx: RoundContext):
    # Every per-client field of ctx is gathered with the stack: a rule mixing a sharded one (mimic's
    # client_ids) into a contraction over the replicated stack is an ambiguous-sharding error.
    gathered, weights, byzantine, client_ids = cohort.unshard(
        (updates, ctx.weights, ctx.byzantine, ctx.client_ids))
    ctx = ctx._replace(weights=weights, byzantine=byzantine, client_ids=client_ids)
    out = replace_byzantine(gathered, fn(gathered, ctx), byzantine)
    return cohort.reshard_like(out, updates)
  return stateless(apply)


def _honest_weights(ctx):
  """[C] float32: 1 for present honest clients, else 0."""
  return (cohort.present(ctx.weights) & ~ctx.byzantine).astype(jnp.float32)


def sign_flip(scale: float = 1.0) -> Transform:
  """Sign flipping: a Byzantine client sends -scale * u_i instead of its update u_i."""
  cohort.check_positive(scale, 'scale')
  return _gathered_attack(lambda u, ctx: jax.tree.map(lambda x: -scale * x, u))


def scaled_update(scale: float = 10.0) -> Transform:
  """Scaled update: a Byzantine client sends scale * u_i (amplifies its own update)."""
  cohort.check_positive(scale, 'scale')
  return _gathered_attack(lambda u, ctx: jax.tree.map(lambda x: scale * x, u))


def model_replacement(clients_per_round: int, server_lr: float = 1.0) -> Transform:
  """Model replacement / boosting (Bagdasaryan et al., "How To Backdoor Federated Learning",
  AISTATS 2020, Sec. 4.1): scale the malicious delta by gamma = n / eta so that, after averaging
  over n clients and a server step of size eta, the global model lands on the attacker's model.

  Args:
    clients_per_round: n.
    server_lr: eta, the server learning rate.
  """
  cohort.check_int(clients_per_round, 'clients_per_round', 1)
  server_lr = cohort.check_positive(server_lr, 'server_lr')
  return scaled_update(clients_per_round / server_lr)


def gaussian_noise(std: float = 1.0, additive: bool = False) -> Transform:
  """Gaussian attack: a Byzantine client sends std * xi (xi ~ N(0, I)), or u_i + std * xi if
  `additive`. Client i's noise is drawn from fold_in(ctx.rng, client_id), so it does not depend
  on placement or cohort order.
  """
  cohort.check_positive(std, 'std')

  def malicious(updates, ctx):
    leaves, treedef = jax.tree.flatten(updates)
    sizes = [math.prod(leaf.shape[1:]) for leaf in leaves]
    # One draw of all D coordinates per client (one PRNG program to compile), then split by leaf.
    keys = jax.vmap(lambda i: jax.random.fold_in(ctx.rng, i))(ctx.client_ids)
    draws = jax.vmap(lambda k: jax.random.normal(k, (sum(sizes),)))(keys)
    noise, start = [], 0
    for leaf, size in zip(leaves, sizes):
      draw = draws[:, start:start + size].reshape(leaf.shape)
      start += size
      noise.append(std * draw + (leaf.astype(jnp.float32) if additive else 0.0))
    return jax.tree.unflatten(treedef, noise)

  return _gathered_attack(malicious)


def alie_default_z(n: int, f: int) -> float:
  """Baruch et al.'s z_max: s = floor(n/2 + 1) - f supporters needed, z = Phi^{-1}((n - s) / n)."""
  s = math.floor(n / 2 + 1) - f
  from scipy.stats import norm  # Local import: only this helper needs scipy.
  return float(norm.ppf((n - s) / n))


def _alie_z_traced(n, f):
  """alie_default_z on traced counts; clipped away from 0 and 1 so Phi^{-1} stays finite."""
  n = n.astype(jnp.float32)
  s = jnp.floor(n / 2 + 1) - f.astype(jnp.float32)
  p = cohort.safe_divide(n - s, n)
  return ndtri(jnp.clip(p, 1e-6, 1 - 1e-6))


def _honest_mean_std(updates, honest):
  """Coordinate-wise mean and sample standard deviation (ddof = 1) over rows with honest = 1."""
  count = jnp.sum(honest)
  mean = cohort.combine(updates, cohort.safe_divide(honest, count))
  def std(u, m):
    sq = jnp.tensordot(honest, jnp.square(u.astype(jnp.float32) - m.astype(jnp.float32)), axes=1)
    return jnp.sqrt(cohort.safe_divide(sq, jnp.maximum(count - 1, 1.0)))
  return mean, jax.tree.map(std, updates, mean)


def alie(z: float | None = None) -> Transform:
  """"A Little Is Enough" (Baruch, Baruch & Goldberg, NeurIPS 2019, Algorithm 1).

  Every Byzantine client sends mu - z * sigma, with mu and sigma the coordinate-wise mean and
  standard deviation (ddof = 1) of the present honest updates. Implementations disagree on z;
  here it is explicit. Default (None): the paper's z_max for this round, from the n present
  clients and f present Byzantine clients: s = floor(n/2 + 1) - f, z = Phi^{-1}((n - s) / n).
  A negative z moves the other way (mu + |z| sigma).

  Args:
    z: number of standard deviations, or None for the paper's formula (traced, per round).
  """
  if z is not None and not isinstance(z, (int, float)):
    raise ValueError(f'alie: z={z!r} must be a number or None (the paper default).')

  def malicious(updates, ctx):
    honest = _honest_weights(ctx)
    mean, std = _honest_mean_std(updates, honest)
    if z is None:
      present = cohort.present(ctx.weights)
      n = jnp.sum(present).astype(jnp.int32)
      f = jnp.sum(present & ctx.byzantine).astype(jnp.int32)
      z_value = _alie_z_traced(n, f)
    else:
      z_value = jnp.float32(z)
    return jax.tree.map(lambda m, s: m - z_value * s, mean, std)

  return _gathered_attack(malicious)


def ipm(epsilon: float = 0.1) -> Transform:
  """Inner-product manipulation (Xie, Koyejo & Gupta, "Fall of Empires", UAI 2019, Sec. 4):
  every Byzantine client sends -epsilon times the mean of the present honest updates.
  """
  cohort.check_positive(epsilon, 'epsilon')

  def malicious(updates, ctx):
    honest = _honest_weights(ctx)
    mean = cohort.combine(updates, cohort.safe_divide(honest, jnp.sum(honest)))
    return jax.tree.map(lambda m: -epsilon * m, mean)

  return _gathered_attack(malicious)


def mimic() -> Transform:
  """Mimic (Karimireddy, He & Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
  Bucketing", ICLR 2022, Sec. 5): every Byzantine client copies one honest client's update, over-
  representing that client's data. The paper picks the target by a principal-direction heuristic
  after warm-up; here it is the present honest client with the smallest global id, so the same
  client is copied whenever it is sampled (a simplification).
  """
  def malicious(updates, ctx):
    honest = _honest_weights(ctx) > 0
    big = jnp.iinfo(jnp.int32).max
    target_id = jnp.min(jnp.where(honest, ctx.client_ids, big))
    one_hot = (honest & (ctx.client_ids == target_id)).astype(jnp.float32)
    return cohort.combine(updates, one_hot)

  return _gathered_attack(malicious)
