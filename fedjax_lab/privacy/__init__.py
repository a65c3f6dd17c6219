"""Privacy: client-level DP (clipping, noise, accounting with dp-accounting) and gradient inversion."""

from fedjax_lab.privacy.accounting import (ACCOUNTANTS, SAMPLINGS, PrivacySpec, calibrate_noise_multiplier,
                                           compute_epsilon, dp_event, make_accountant)
from fedjax_lab.privacy.dp import (dp_fedavg_components, local_dp, local_dp_epsilon, participant_mean,
                                   poisson_capacity, poisson_cohort)
from fedjax_lab.privacy.inversion import (InversionResult, Quality, fedavg_update, fedsgd_gradient,
                                          gradient_distance, idlg_label, invert, last_dense_kernel,
                                          make_observation_fn, reconstruction_quality, sigmoid_mlp)
