"""Aggregators: pure functions from stacked client updates to one server update.

An `Aggregator` is `init(params) -> state` and `aggregate(updates, state, context) -> (update,
state)`: `updates` has leaves [C, ...] (the cohort axis first), `context.weights` [C] are the
aggregation weights (0 for dropped or padding clients), and `update` has the leaves of one client.

Streaming. An aggregator that is "map each client, take a weighted sum, finish with the sum" also
carries a `StreamingForm`; FedAvg then fuses the per-client map into the client function and keeps a
running sum (`fedjax_lab.clients.placement.sum_clients`) instead of materialising the [C, ...]
stack, so memory is one client's (or one chunk's) whatever C is. Streaming: `mean`, DP-FedAvg's
`dp_mean` (clip, sum, noise once, divide), local DP's `participant_mean`, `norm_bounded_mean`.
Not streaming (they need the whole stack, C x model bytes): `median`, `trimmed_mean`, `krum`,
`multi_krum`, `bulyan`, `geometric_median` (order statistics, distances, Weiszfeld iterations) and
`centered_clipping` (iterations over the stack).

Excluded clients cannot leak. A client with weight 0 (dropped, padding, rejected) may hold
anything in its slot, NaN and Inf included; every aggregator selects rows with `jnp.where` before
it sums (`masked_sum`), so such a row changes nothing. A streaming aggregator's stacked form sums
exactly what its streaming form sums (`streamed_sums`), so the two agree bit for bit on the same
stack (`streamed_aggregate` evaluates the streaming form on a stack).

Breakdown conditions. A robust rule that holds only while enough clients report (Krum's
n > 2f + 2, Bulyan's n >= 4f + 3, the trimmed mean's 2f < n, an honest majority 2f < n) carries
`breakdown_ok(num_reporting) -> [] bool`, a pure function of the round's count of clients with
weight > 0. It is checked on the static cohort size before compiling, and `round_metrics` evaluates
it inside the jitted round on the clients that actually reported (drop-out can leave fewer).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab.cohort import RoundContext, masked_sum

PyTree = Any


class StreamingForm(NamedTuple):
  """An aggregator as a per-client map, a weighted running sum and a finalize step.

  For updates u_i and weights w_i ([C], ctx.weights) the aggregate equals

      finalize(sum_i sum_weight(w_i) * client_map(u_i), sum_i sum_weight(w_i), state, ctx)

  where a client whose sum weight is 0 adds exactly 0 (never 0 * inf).

  Attributes:
    client_map: `(update, weight) -> update` for one client, leaves [...] (identity for the mean,
      clipping for DP). Must not depend on other clients.
    sum_weight: `weight -> weight`, [] -> [] float32: the client's weight in the sum.
    finalize: `(sums, total_weight, state, ctx) -> (update, state)`: sums has float32 leaves [...],
      total_weight is [] float32; ctx is the round's RoundContext (ctx.rng for noise, ctx.params
      for dtypes).
  """

  client_map: Callable[[PyTree, jax.Array], PyTree]
  sum_weight: Callable[[jax.Array], jax.Array]
  finalize: Callable[[PyTree, jax.Array, PyTree, RoundContext], tuple[PyTree, PyTree]]


class Aggregator(NamedTuple):
  """`init(params) -> state`, `aggregate(updates, state, ctx) -> (update, state)` (module docstring).

  Besides the two functions an aggregator carries its traits as data, which the registry and the
  contract tests read (no list of names kept anywhere else):

  Attributes:
    init: `params -> state`.
    aggregate: `(updates leaves [C, ...], state, ctx) -> (update leaves [...], state)`.
    streaming_form: set when the aggregator can run as a running sum (memory flat in C); the
      `streaming` property says whether it is.
    needs_honest_majority: the rule's guarantee holds only while fewer than half of the present
      clients are Byzantine (breakdown point at most 1/2: median, trimmed mean, Krum, Bulyan,
      geometric median); a Byzantine fraction >= 1/2 is refused for it.
    max_byzantine: `n -> int`: for n present clients, the most Byzantine clients the rule, as
      built, is guaranteed to resist; negative when its breakdown condition fails at n (Krum built
      for f needs n > 2f + 2). None when the rule makes no such guarantee (the mean, clipping and
      DP rules, whose protection is a bound on each client's influence, not a count).
    breakdown_ok: `num_reporting` ([] int32, clients with weight > 0 this round) -> [] bool, True while
      the rule's guarantee holds; pure and jittable; `round_metrics` turns it into the round's
      'breakdown_violated' metric. None for rules without a breakdown condition.
  """

  init: Callable[[PyTree], PyTree]
  aggregate: Callable[[PyTree, PyTree, RoundContext], tuple[PyTree, PyTree]]
  streaming_form: StreamingForm | None = None
  needs_honest_majority: bool = False
  max_byzantine: Callable[[int], int] | None = None
  breakdown_ok: Callable[[jax.Array], jax.Array] | None = None

  @property
  def streaming(self) -> bool:
    """True when FedAvg may stream this aggregator (it has a `streaming_form`)."""
    return self.streaming_form is not None


def minority_byzantine(num_present: int) -> int:
  """`max_byzantine` of a rule with breakdown point 1/2 (median, geometric median): (n - 1) // 2."""
  return (num_present - 1) // 2


def byzantine_bound(f: int, min_clients: int) -> Callable[[int], int]:
  """`max_byzantine` of a rule built for f that needs n >= min_clients: f, or -1 below min_clients."""
  return lambda num_present: f if num_present >= min_clients else -1


def identity_map(update: PyTree, weight: jax.Array) -> PyTree:
  """A StreamingForm.client_map that leaves the update unchanged."""
  del weight
  return update


def present_weight(weight: jax.Array) -> jax.Array:
  """A StreamingForm.sum_weight that counts every participant once (1 if weight > 0, else 0)."""
  return (jnp.asarray(weight) > 0).astype(jnp.float32)


def cast_like(tree: PyTree, like: PyTree) -> PyTree:
  """Casts each leaf to the dtype of the matching leaf of `like` (unchanged when like is None)."""
  if like is None:
    return tree
  return jax.tree.map(lambda t, l: t.astype(l.dtype), tree, like)


def divide_by_total(sums: PyTree, total: jax.Array, like: PyTree = None) -> PyTree:
  """sums / total, 0 when total is 0 (then every sum is 0 too); cast like `like`."""
  safe = jnp.where(total > 0, total, 1.0)
  return cast_like(jax.tree.map(lambda s: s / safe, sums), like)


def streamed_sums(form: StreamingForm, updates: PyTree, weights: jax.Array) -> tuple[PyTree, jax.Array]:
  """The running sum a StreamingForm keeps, computed on the stack.

  Args:
    form: the aggregator's StreamingForm.
    updates: pytree, leaves [C, ...].
    weights: [C] aggregation weights (ctx.weights).
  Returns:
    (sums with float32 leaves [...], total sum weight [] float32). A client whose sum weight is 0
    adds exactly 0 whatever its slot holds.
  """
  weights = jnp.asarray(weights, jnp.float32)
  sum_weights = jax.vmap(form.sum_weight)(weights)
  mapped = jax.vmap(form.client_map)(updates, weights)
  return masked_sum(mapped, sum_weights), jnp.sum(sum_weights)


def streamed_aggregate(form: StreamingForm, updates: PyTree, state: PyTree, ctx: RoundContext):
  """Evaluates a StreamingForm on the stacked updates (leaves [C, ...]): what streaming computes.

  Useful to check an aggregator's `aggregate` against its streaming form (bit for bit when the
  updates have the params' dtype: both go through `streamed_sums`).
  """
  sums, total = streamed_sums(form, updates, ctx.weights)
  return form.finalize(sums, total, state, ctx)


def dtypes_of(updates: PyTree) -> PyTree:
  """One client's dtypes (leaves [C, ...] -> ShapeDtypeStruct [...]), for `cast_like`."""
  return jax.tree.map(lambda u: jax.ShapeDtypeStruct(u.shape[1:], u.dtype), updates)


def weighted_mean(updates: PyTree, weights: jax.Array) -> PyTree:
  """sum_i w_i u_i / sum_i w_i over the leading axis; 0 when all weights are 0.

  Rows with w_i = 0 are masked out (`where`), so NaN or Inf in an excluded slot cannot leak; a
  NaN in a row with w_i > 0 propagates (the plain mean has no defence; FedAvg's divergence check
  sees it).

  Args:
    updates: pytree, leaves [C, ...].
    weights: [C] non-negative.
  Returns:
    pytree, leaves [...] (each leaf's dtype).
  """
  weights = jnp.asarray(weights, jnp.float32)
  return divide_by_total(masked_sum(updates, weights), jnp.sum(weights), dtypes_of(updates))


def round_metrics(aggregator: Aggregator, weights: jax.Array) -> dict[str, jax.Array]:
  """The aggregator's per-round diagnostics, for the algorithm's metrics (inside jit).

  Args:
    aggregator: the round's Aggregator.
    weights: [C] the round's aggregation weights (ctx.weights); reporting = weight > 0.
  Returns:
    {'breakdown_violated': [] int32, 1 when the rule's breakdown condition fails on the clients
    that reported this round (summed over rounds it counts them)}; {} for a rule without one.
  """
  if aggregator.breakdown_ok is None:
    return {}
  num_reporting = jnp.sum(jnp.asarray(weights) > 0).astype(jnp.int32)
  return {'breakdown_violated': (~aggregator.breakdown_ok(num_reporting)).astype(jnp.int32)}


def mean() -> Aggregator:
  """Example-weighted mean (FedAvg's aggregator). Stateless; streams."""
  form = StreamingForm(
      client_map=identity_map,
      sum_weight=lambda weight: jnp.asarray(weight, jnp.float32),
      finalize=lambda sums, total, state, ctx: (divide_by_total(sums, total, ctx.params), state),
  )
  # The stacked form is the streaming form's sum over the stack (weighted_mean), so the two agree.
  return Aggregator(
      init=lambda params: (),
      aggregate=lambda updates, state, ctx: (weighted_mean(updates, ctx.weights), state),
      streaming_form=form,
      needs_honest_majority=False,
      max_byzantine=None,  # one client moves the mean arbitrarily far
  )
