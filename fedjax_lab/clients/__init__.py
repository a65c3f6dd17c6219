"""Client-side computation: local training and placement over a cohort."""

from fedjax_lab.clients.local import ClientData, ClientOutput, local_sgd, steps_per_epoch
from fedjax_lab.clients.placement import client_mesh, map_clients, resolve_strategy, weighted_sum_clients
