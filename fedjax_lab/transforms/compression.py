"""Update compression: stochastic uniform quantization (optionally after a random rotation) and top-k.

Each compressor is a `Transform` over the stacked client updates (leaves [C, ...]); it returns the
*decoded* updates (what the server reconstructs from the message), so any aggregator can follow.

  quantize(bits, rotate)     stochastic uniform quantization of every client's flattened update to
                             2^bits levels between its min and max (unbiased; Suresh et al. 2017).
                             rotate=True first multiplies by H D / sqrt(n) (Walsh-Hadamard H, random
                             signs D, n the next power of two), which spreads the mass evenly so the
                             [min, max] range shrinks from O(|x|_inf) to O(|x|_2 sqrt(log n / n)).
  topk(k, error_feedback)    keeps the k largest-magnitude coordinates; with error feedback the
                             dropped remainder is kept per client (a [num_clients, D] table indexed
                             by `ctx.client_ids`) and added to that client's next update
                             (Stich et al. 2018; Karimireddy et al. 2019).

Bytes. The sizes are static (they depend on D, bits and k only), so each compressor has a pure
`*_bytes_per_client` function, and its state also carries `bytes_sent`, the bytes the cohort's
participating clients (weight > 0) actually uploaded in the last round. Studies read the state
(what was sent) and tests check it equals participants x bytes_per_client. A quantized message is
ceil(n * bits / 8) bytes of codes plus two float32 (min, max); the rotation's signs come from the
round key shared with the server, so they cost nothing. A top-k message is k float32 values plus k
int32 indices. bits=32 sends the float32 update unchanged (4 D bytes).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab.transforms.base import ClientContext, RoundContext, Transform, per_client_transform

PyTree = Any

FLOAT32_BYTES = 4
INDEX_BYTES = 4


# ---------------------------------------------------------------------------------------------
# Validation (before anything is compiled).


def validate_bits(bits: int, field: str = 'config.compression.bits') -> None:
  if isinstance(bits, bool) or int(bits) != bits or not 1 <= bits <= 32:
    raise ValueError(f'{field}={bits} must be an integer in 1..32.')


def validate_k(k: int, num_params: int, field: str = 'config.compression.k') -> None:
  if isinstance(k, bool) or int(k) != k or not 1 <= k <= num_params:
    raise ValueError(f'{field}={k} must be an integer in 1..{num_params} (the model size).')


def k_from_fraction(fraction: float, num_params: int, field: str = 'config.compression.fraction') -> int:
  """k = max(1, round(fraction * num_params)) for a fraction in (0, 1]."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'{field}={fraction} must be in (0, 1].')
  return max(1, int(round(fraction * num_params)))


# ---------------------------------------------------------------------------------------------
# Bytes of one client's message.


def next_power_of_two(n: int) -> int:
  return 1 << max(0, int(n - 1).bit_length())


def quantize_bytes_per_client(num_params: int, bits: int, rotate: bool = False) -> int:
  """Bytes of one quantized update of `num_params` coordinates (codes + min and max)."""
  validate_bits(bits)
  if bits == 32:
    return FLOAT32_BYTES * num_params
  n = next_power_of_two(num_params) if rotate else num_params
  return math.ceil(n * bits / 8) + 2 * FLOAT32_BYTES


def topk_bytes_per_client(k: int) -> int:
  """Bytes of one top-k update: k float32 values and k int32 indices."""
  return k * (FLOAT32_BYTES + INDEX_BYTES)


def dense_bytes_per_client(num_params: int) -> int:
  return FLOAT32_BYTES * num_params


# ---------------------------------------------------------------------------------------------
# Flattening stacked updates to [C, D] and back.


def flatten_clients(updates: PyTree) -> tuple[jax.Array, Any]:
  """Stacked pytree (leaves [C, ...]) -> ([C, D] float32, how to undo it)."""
  leaves, treedef = jax.tree.flatten(updates)
  num = leaves[0].shape[0]
  flat = jnp.concatenate([leaf.reshape(num, -1).astype(jnp.float32) for leaf in leaves], axis=1)
  meta = (treedef, [(leaf.shape, leaf.dtype) for leaf in leaves])
  return flat, meta


def unflatten_clients(flat: jax.Array, meta) -> PyTree:
  """Inverse of `flatten_clients`: [C, D] -> pytree with the original leaf shapes and dtypes."""
  treedef, specs = meta
  leaves, start = [], 0
  for shape, dtype in specs:
    size = math.prod(shape[1:])
    leaves.append(flat[:, start:start + size].reshape(shape).astype(dtype))
    start += size
  return jax.tree.unflatten(treedef, leaves)


def flatten_one(update: PyTree) -> jax.Array:
  """One client's pytree (leaves [...]) -> [D] float32, leaves in `flatten_clients`' order."""
  return jnp.concatenate([leaf.reshape(-1).astype(jnp.float32) for leaf in jax.tree.leaves(update)])


def unflatten_one(flat: jax.Array, like: PyTree) -> PyTree:
  """Inverse of `flatten_one`: [D] -> pytree with the shapes and dtypes of `like`."""
  leaves, treedef = jax.tree.flatten(like)
  out, start = [], 0
  for leaf in leaves:
    out.append(flat[start:start + leaf.size].reshape(leaf.shape).astype(leaf.dtype))
    start += leaf.size
  return jax.tree.unflatten(treedef, out)


def _num_params(params: PyTree) -> int:
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def _client_keys(rng: jax.Array, client_ids: jax.Array) -> jax.Array:
  """[C] keys from the round key and global ids: a client's draws do not depend on the cohort order."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(client_ids)


def _bytes_sent(weights: jax.Array, per_client: int) -> jax.Array:
  return jnp.sum((weights > 0).astype(jnp.float32)) * float(per_client)


# ---------------------------------------------------------------------------------------------
# Random rotation: Walsh-Hadamard with random signs.


def fwht(x: jax.Array) -> jax.Array:
  """Unnormalized fast Walsh-Hadamard transform along the last axis: x @ H_n (Sylvester order).

  Args:
    x: [..., n] with n a power of two.

  Returns:
    [..., n]; applying it twice gives n * x.
  """
  n = x.shape[-1]
  if n & (n - 1):
    raise ValueError(f'fwht needs a power-of-two length, got {n}.')
  batch = x.shape[:-1]
  h = 1
  while h < n:
    y = x.reshape(batch + (n // (2 * h), 2, h))
    a, b = y[..., 0, :], y[..., 1, :]
    x = jnp.stack([a + b, a - b], axis=-2).reshape(batch + (n,))
    h *= 2
  return x


def random_signs(rng: jax.Array, n: int) -> jax.Array:
  """[n] float32 of +-1 drawn from rng."""
  return jnp.where(jax.random.bernoulli(rng, 0.5, (n,)), 1.0, -1.0).astype(jnp.float32)


def hadamard_rotate(x: jax.Array, signs: jax.Array) -> jax.Array:
  """H D x / sqrt(n): x [D] zero-padded to n = len(signs), a power of two. Orthogonal."""
  n = signs.shape[0]
  padded = jnp.pad(x, (0, n - x.shape[0]))
  return fwht(padded * signs) / jnp.sqrt(float(n))


def hadamard_unrotate(y: jax.Array, signs: jax.Array, num_params: int) -> jax.Array:
  """Inverse of `hadamard_rotate`: D H y / sqrt(n), cut back to the first num_params coordinates."""
  n = signs.shape[0]
  return (signs * fwht(y) / jnp.sqrt(float(n)))[:num_params]


# ---------------------------------------------------------------------------------------------
# Stochastic uniform quantization.


def stochastic_quantize(x: jax.Array, bits: int, rng: jax.Array) -> jax.Array:
  """Unbiased stochastic rounding of x [n] to 2^bits evenly spaced levels in [min(x), max(x)].

  Each coordinate is rounded to one of its two neighbouring levels with probabilities that make
  E[q] = x. Returns the dequantized values ([n] float32); bits=32 returns x unchanged.
  """
  if bits == 32:
    return x
  levels = 2.0 ** bits - 1.0
  lo, hi = jnp.min(x), jnp.max(x)
  scale = jnp.where(hi > lo, (hi - lo) / levels, 1.0)
  position = (x - lo) / scale
  floor = jnp.floor(position)
  up = jax.random.uniform(rng, x.shape) < (position - floor)
  codes = jnp.clip(floor + up, 0.0, levels)
  return lo + codes * scale


class QuantizeState(NamedTuple):
  """bytes_sent: scalar float32, bytes the participating clients uploaded in the last round."""

  bytes_sent: jax.Array


def quantize(bits: int = 8, rotate: bool = False) -> Transform:
  """Stochastic uniform b-bit quantization of each client's whole update.

  Args:
    bits: b in 1..32 (32 = no compression).
    rotate: apply the random Walsh-Hadamard rotation before quantizing (and undo it after).

  Returns:
    Transform; update maps leaves [C, ...] to the dequantized leaves [C, ...].
  """
  validate_bits(bits)

  def init(params) -> QuantizeState:
    del params
    return QuantizeState(jnp.zeros((), jnp.float32))

  def one_client(x, key):
    if not rotate:
      return stochastic_quantize(x, bits, key)
    sign_key, round_key = jax.random.split(key)
    signs = random_signs(sign_key, next_power_of_two(x.shape[0]))
    return hadamard_unrotate(stochastic_quantize(hadamard_rotate(x, signs), bits, round_key), signs, x.shape[0])

  def apply(update, client_ctx: ClientContext):
    # Client i's key is fold_in(round key, id): the same draws stacked or streamed.
    key = jax.random.fold_in(client_ctx.rng, client_ctx.client_id)
    return unflatten_one(one_client(flatten_one(update), key), update)

  def next_state(state, ctx: RoundContext, update_shapes) -> QuantizeState:
    del state
    per_client = quantize_bytes_per_client(_num_params(update_shapes), bits, rotate)
    return QuantizeState(_bytes_sent(ctx.weights, per_client))

  # Each client quantizes its own update with its own key: per-client, so FedAvg streams it.
  return per_client_transform(apply, init, next_state)


# ---------------------------------------------------------------------------------------------
# Top-k sparsification with error feedback.


class TopKState(NamedTuple):
  """residuals: [num_clients, D] float32 error memory (zeros without error feedback);
  bytes_sent: scalar float32, bytes uploaded in the last round."""

  residuals: jax.Array
  bytes_sent: jax.Array


def topk_sparsify(x: jax.Array, k: int) -> jax.Array:
  """Keeps the k largest |x_i| of x [D] (ties: lowest index first), zeros elsewhere."""
  _, idx = jax.lax.top_k(jnp.abs(x), k)
  return jnp.zeros_like(x).at[idx].set(x[idx])


def topk(k: int, num_params: int, num_clients: int, error_feedback: bool = True) -> Transform:
  """Top-k sparsification of each client's update, with optional per-client error feedback.

  With error feedback client i sends topk(u_i + e_i) and keeps e_i <- u_i + e_i - sent; a client
  that was sampled but dropped out (weight 0) sends nothing and keeps its e_i.

  Args:
    k: coordinates kept, 1..num_params.
    num_params: D, the model size.
    num_clients: K, the number of clients in the federation (rows of the residual table; only
      allocated with error feedback).
    error_feedback: keep and re-send the dropped remainder.

  Returns:
    Transform; update maps leaves [C, ...] to the sparse leaves [C, ...].
  """
  validate_k(k, num_params)
  if error_feedback and num_clients < 1:
    raise ValueError(f'num_clients={num_clients} must be >= 1 for top-k error feedback.')
  rows = num_clients if error_feedback else 0

  def init(params) -> TopKState:
    del params
    return TopKState(jnp.zeros((rows, num_params), jnp.float32), jnp.zeros((), jnp.float32))

  if not error_feedback:
    # Without the residual table a client's message depends on its own update only: per-client.
    def apply(update, client_ctx: ClientContext):
      del client_ctx
      if _num_params(update) != num_params:
        raise ValueError(f'top-k was built for {num_params} parameters but the updates have {_num_params(update)}.')
      return unflatten_one(topk_sparsify(flatten_one(update), k), update)

    def next_state(state: TopKState, ctx: RoundContext, update_shapes) -> TopKState:
      del update_shapes
      return TopKState(state.residuals, _bytes_sent(ctx.weights, topk_bytes_per_client(k)))

    return per_client_transform(apply, init, next_state)

  def update(updates, state: TopKState, ctx: RoundContext):
    flat, meta = flatten_clients(updates)
    if flat.shape[1] != num_params:
      raise ValueError(f'top-k was built for {num_params} parameters but the updates have {flat.shape[1]}.')
    residuals = state.residuals
    if error_feedback:
      flat = flat + jnp.take(residuals, ctx.client_ids, axis=0)
    sent = jax.vmap(lambda x: topk_sparsify(x, k))(flat)
    if error_feedback:
      present = (ctx.weights > 0)[:, None]
      old = jnp.take(residuals, ctx.client_ids, axis=0)
      residuals = residuals.at[ctx.client_ids].set(jnp.where(present, flat - sent, old))
    return unflatten_clients(sent, meta), TopKState(residuals, _bytes_sent(ctx.weights, topk_bytes_per_client(k)))

  return Transform(init, update)


# ---------------------------------------------------------------------------------------------
# By name (the runner's registry, fedjax_lab/runner/registry.py, passes config.compression's fields).

COMPRESSORS = ('quantize', 'topk')


def resolve_k(num_params: int, k: int | None = None, fraction: float | None = None) -> int:
  """Top-k's k: `k` itself (1..num_params), else max(1, round(fraction * num_params))."""
  if k is not None:
    validate_k(k, num_params)
    return int(k)
  if fraction is None:
    raise ValueError('config.compression needs k (an integer) or fraction (in (0, 1]) for top-k.')
  return k_from_fraction(fraction, num_params)


def bytes_per_client(name: str, num_params: int, bits: int = 8, rotate: bool = False, k: int | None = None,
                     fraction: float | None = None, error_feedback: bool = True) -> int:
  """Bytes one client uploads under compressor `name` ('none': dense float32).

  Takes the compressors' own arguments (error_feedback does not change the size), so a
  compressor's fields can be passed unchanged.
  """
  del error_feedback
  if name == 'none':
    return dense_bytes_per_client(num_params)
  if name == 'quantize':
    return quantize_bytes_per_client(num_params, bits, rotate)
  if name == 'topk':
    return topk_bytes_per_client(resolve_k(num_params, k, fraction))
  raise ValueError(f'Unknown config.compression.name={name!r}; choose one of {list(COMPRESSORS)} or none.')
