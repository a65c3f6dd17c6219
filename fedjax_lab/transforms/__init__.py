"""Update transforms over stacked client updates ([C, ...] leaves)."""

from fedjax_lab.transforms.base import (ClientContext, PerClient, RoundContext, Transform, chain, identity,
                                       make_context, per_client_transform, stateless)
# Pre-aggregation rules for Byzantine robustness.
from fedjax_lab.transforms.preaggregation import (adaptive_robust_clipping, arc,
                                                  nearest_neighbor_mixing, nnm)
# Client-level DP: per-client clipping and Gaussian noise.
from fedjax_lab.transforms.clipping import clip_by_client_norm, clip_updates, client_norms
from fedjax_lab.transforms.noise import add_client_noise, add_gaussian_noise, gaussian_noise
# Update compression: quantization (+ Walsh-Hadamard rotation), top-k with error feedback.
from fedjax_lab.transforms.compression import quantize, topk
