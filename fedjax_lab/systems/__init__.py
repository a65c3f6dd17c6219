"""systems."""
from fedjax_lab.systems.cost_model import (Network, SpeedupCurve, SyncTimeline, async_communication_seconds,
                                           bytes_sent_per_worker, compute_seconds, least_squares_gradient_flops,
                                           message_seconds, sync_communication_seconds, sync_speedup,
                                           sync_timeline, validate_network, validate_num_workers)
from fedjax_lab.systems.stragglers import (StragglerModel, bernoulli, fixed, sample_slowdowns,
                                           validate_stragglers)
from fedjax_lab.systems.timeline import KINDS, Segments, busy_fraction, sync_segments
from fedjax_lab.systems.measure import interleaved_min_seconds, median_seconds
