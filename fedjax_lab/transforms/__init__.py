"""Update transforms over stacked client updates ([C, ...] leaves)."""

from fedjax_lab.transforms.base import RoundContext, Transform, chain, identity, make_context, stateless
# Pre-aggregation rules for Byzantine robustness (issue #6).
from fedjax_lab.transforms.preaggregation import (adaptive_robust_clipping, arc,
                                                  nearest_neighbor_mixing, nnm)
