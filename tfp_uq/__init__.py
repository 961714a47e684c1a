"""tfp-uq: honest uncertainty for any Keras 3 model."""

from tfp_uq import layers, metrics, priors
from tfp_uq.elbo import bayesian_layers, set_deterministic, set_kl_weight
from tfp_uq.layers import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)

__version__ = "0.1.0"
