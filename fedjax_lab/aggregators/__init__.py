"""Aggregators of stacked client updates."""

from fedjax_lab.aggregators.base import Aggregator, mean, weighted_mean
