"""Keeping `shard_map`'s varying-manual-axes (vma) types consistent in loop carries.

Inside `jax.shard_map`, a value computed from per-device inputs is "varying" over the mesh axis,
while constants (`jnp.zeros(...)`, an optimizer's step count) are not; `lax.scan` refuses a carry
whose type changes between input and output. `match_vma(tree, reference)` marks constants as
varying over the same axes as `reference`; outside shard_map it returns `tree` unchanged.
"""

from __future__ import annotations

from typing import Any

import jax


def _vma(x) -> frozenset:
  aval = jax.typeof(x)
  manual = getattr(aval, 'manual_axis_type', None)  # jax >= 0.10
  if manual is not None:
    return frozenset(manual.varying)
  return frozenset(getattr(aval, 'vma', frozenset()))  # older releases


def match_vma(tree: Any, reference: jax.Array) -> Any:
  """Returns `tree` with every leaf varying over at least the mesh axes `reference` varies over."""
  axes = _vma(reference)
  if not axes:
    return tree

  def cast(leaf):
    missing = tuple(sorted(axes - _vma(leaf)))
    return jax.lax.pcast(leaf, missing, to='varying') if missing else leaf

  return jax.tree.map(cast, tree)
