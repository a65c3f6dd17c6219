"""Federated data: padded client arrays, partitioners, built-in data sets and file loaders."""

from fedjax_lab.data.federated import (FederatedData, SplitFederatedData, example_mask, gather_clients, pack_clients,
                                       pad_clients, to_device, unpack_clients)
from fedjax_lab.data.sampling import (SAMPLINGS, Cohort, RoundInputs, byzantine_mask, client_rows, cohort_capacity,
                                      cohort_num_examples, materialize, poisson_capacity, poisson_cohort,
                                      sample_client_ids, sample_cohort, sample_round, validate_cohort_sampling,
                                      validate_sampling)
from fedjax_lab.data import datasets, loaders, partition
from fedjax_lab.data.datasets import DATASETS, FederatedDataset, load_dataset
from fedjax_lab.data.partition import PARTITIONERS, label_histogram
