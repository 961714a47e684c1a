"""Bayesian Keras layers."""

from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers.dense import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)
