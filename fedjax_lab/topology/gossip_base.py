"""The `Gossip` operator type and the operand helpers its implementations share.

`gossip.py` (dense and sparse mixing, `make_gossip`) and `sharded.py` (ppermute halo exchange) both
build a `Gossip`; they import it from here, so `gossip` may dispatch to `sharded` without a cycle.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


class Gossip(NamedTuple):
  """A gossip operator.

  Attributes:
    operands: pytree of arrays `apply` reads (dense: W [T, N, N]; sparse: neighbours and weights
      [T, N, D]; ppermute: coefficients).
    apply: (operands, x leaves [N, ...], step [] int) -> leaves [N, ...], x_i <- sum_j W_t[i, j] x_j.
    impl: 'dense', 'sparse' or 'ppermute'.
    num_nodes: N.
    period: T, the number of mixing matrices cycled.
    num_links: directed links i <- j (i != j) used per step, summed over one period and divided by
      T: what one gossip step sends, in models.
  """

  operands: PyTree
  apply: Callable[[PyTree, PyTree, jax.Array], PyTree]
  impl: str
  num_nodes: int
  period: int
  num_links: float

  def mix(self, x: PyTree, step: jax.Array | int = 0) -> PyTree:
    """W_{step mod T} x over the leading axis of every leaf of x."""
    return self.apply(self.operands, x, step)


def select_step(stack, step, period: int):
  """stack[step % period] ([T, ...] -> [...]); a traced step indexes dynamically, no recompile."""
  if period == 1:
    return stack[0]
  return jax.lax.dynamic_index_in_dim(jnp.asarray(stack), jnp.asarray(step, jnp.int32) % period, 0,
                                      keepdims=False)


def as_operand(array: np.ndarray, dtype):
  """The array a Gossip keeps in `operands`: numpy float64 (dtype None) or a device array."""
  # dtype None keeps float64 numpy weights, cast to each leaf's dtype when traced, so float64 runs
  # (jax.enable_x64) mix with exactly doubly stochastic weights; a dtype gives device arrays.
  return np.asarray(array) if dtype is None else jnp.asarray(array, dtype)


def num_links(mixing: np.ndarray) -> float:
  """Directed off-diagonal links of a mixing stack [T, N, N], summed and divided by T."""
  off_diagonal = (mixing > 0) & ~np.eye(mixing.shape[-1], dtype=bool)
  return float(off_diagonal.sum() / mixing.shape[0])
