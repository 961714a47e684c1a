"""Bayesian Keras layers, MC dropout and output heads."""

from tfp_uq.layers._base import BayesianLayer, StochasticLayer, VariationalLayer
from tfp_uq.layers.conv import (
    Conv1DFlipout,
    Conv1DReparameterization,
    Conv2DFlipout,
    Conv2DReparameterization,
    Conv3DFlipout,
    Conv3DReparameterization,
)
from tfp_uq.layers.dense import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)
from tfp_uq.layers.dropout import (
    ConcreteDropout,
    MCDropout,
    MCDropoutWrapper,
    SpatialMCDropout1D,
    SpatialMCDropout2D,
    SpatialMCDropout3D,
)
from tfp_uq.layers.heads import GaussianHead
from tfp_uq.layers.lora import BayesianLoRA

__all__ = [
    "BayesianLayer",
    "BayesianLoRA",
    "ConcreteDropout",
    "Conv1DFlipout",
    "Conv1DReparameterization",
    "Conv2DFlipout",
    "Conv2DReparameterization",
    "Conv3DFlipout",
    "Conv3DReparameterization",
    "DenseFlipout",
    "DenseLocalReparameterization",
    "DenseReparameterization",
    "GaussianHead",
    "MCDropout",
    "MCDropoutWrapper",
    "SpatialMCDropout1D",
    "SpatialMCDropout2D",
    "SpatialMCDropout3D",
    "StochasticLayer",
    "VariationalLayer",
]
