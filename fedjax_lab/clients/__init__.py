"""Client-side computation: local training and placement over a cohort."""

from fedjax_lab.clients.local import ClientData, ClientOutput, local_sgd, steps_per_epoch
from fedjax_lab.clients.placement import (ChunkChoice, Placement, chunk_size_for_budget, client_mesh,
                                         compiled_temp_bytes, make_placement, map_clients, pick_chunk_size,
                                         resolve_strategy, sum_clients, weighted_sum_clients)
