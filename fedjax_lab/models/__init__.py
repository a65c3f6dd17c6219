"""Models (flax, as pure init/apply pairs), losses and metrics."""

from fedjax_lab.models.losses import accuracy, masked_mean, softmax_cross_entropy, squared_error
from fedjax_lab.models.models import (MODELS, Model, batch_loss, cnn, cnn1d, cnn_digits, evaluate, get_model,
                                      linear_regression, logistic_regression, mlp, num_params)
