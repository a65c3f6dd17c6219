"""Aggregators of stacked client updates."""

from fedjax_lab.aggregators.base import (Aggregator, StreamingForm, mean, round_metrics, streamed_aggregate,
                                         streamed_sums, weighted_mean)
# Robust aggregators.
from fedjax_lab.aggregators.clipping import CenteredClippingState, centered_clipping, norm_bounded_mean
from fedjax_lab.aggregators.coordinatewise import median, trimmed_mean
from fedjax_lab.aggregators.geometric_median import geometric_median
from fedjax_lab.aggregators.krum import bulyan, krum, multi_krum
from fedjax_lab.aggregators.robust import (ROBUST_AGGREGATORS, byzantine_arguments, byzantine_count,
                                           check_byzantine_fraction, get_robust_aggregator, num_byzantine)
# DP-FedAvg's central-DP aggregator.
from fedjax_lab.aggregators.dp import dp_mean, dp_sum
from fedjax_lab.aggregators.robust import AGGREGATORS  # config name -> builder(clients_per_round=..., **kw)
