"""Bayesian Keras layers and output heads."""

from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers.dense import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)
from tfp_uq.layers.heads import GaussianHead
