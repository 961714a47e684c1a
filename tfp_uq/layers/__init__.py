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
from tfp_uq.layers.conv_transpose import (
    Conv1DTransposeFlipout,
    Conv1DTransposeReparameterization,
    Conv2DTransposeFlipout,
    Conv2DTransposeReparameterization,
    Conv3DTransposeFlipout,
    Conv3DTransposeReparameterization,
)
from tfp_uq.layers.dense import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)
from tfp_uq.layers.depthwise_conv import (
    DepthwiseConv1DFlipout,
    DepthwiseConv1DReparameterization,
    DepthwiseConv2DFlipout,
    DepthwiseConv2DReparameterization,
)
from tfp_uq.layers.dropout import (
    ConcreteDropout,
    MCDropout,
    MCDropoutWrapper,
    SpatialMCDropout1D,
    SpatialMCDropout2D,
    SpatialMCDropout3D,
)
from tfp_uq.layers.einsum_dense import EinsumDenseFlipout, EinsumDenseReparameterization
from tfp_uq.layers.embedding import EmbeddingReparameterization
from tfp_uq.layers.gru import GRUFlipout, GRUReparameterization
from tfp_uq.layers.heads import GaussianHead
from tfp_uq.layers.lora import BayesianLoRA
from tfp_uq.layers.lstm import LSTMFlipout, LSTMReparameterization
from tfp_uq.layers.separable_conv import (
    SeparableConv1DFlipout,
    SeparableConv1DReparameterization,
    SeparableConv2DFlipout,
    SeparableConv2DReparameterization,
)

__all__ = [
    "BayesianLayer",
    "BayesianLoRA",
    "ConcreteDropout",
    "Conv1DFlipout",
    "Conv1DReparameterization",
    "Conv1DTransposeFlipout",
    "Conv1DTransposeReparameterization",
    "Conv2DFlipout",
    "Conv2DReparameterization",
    "Conv2DTransposeFlipout",
    "Conv2DTransposeReparameterization",
    "Conv3DFlipout",
    "Conv3DReparameterization",
    "Conv3DTransposeFlipout",
    "Conv3DTransposeReparameterization",
    "DenseFlipout",
    "DenseLocalReparameterization",
    "DenseReparameterization",
    "DepthwiseConv1DFlipout",
    "DepthwiseConv1DReparameterization",
    "DepthwiseConv2DFlipout",
    "DepthwiseConv2DReparameterization",
    "EinsumDenseFlipout",
    "EinsumDenseReparameterization",
    "EmbeddingReparameterization",
    "GRUFlipout",
    "GRUReparameterization",
    "GaussianHead",
    "LSTMFlipout",
    "LSTMReparameterization",
    "MCDropout",
    "MCDropoutWrapper",
    "SeparableConv1DFlipout",
    "SeparableConv1DReparameterization",
    "SeparableConv2DFlipout",
    "SeparableConv2DReparameterization",
    "SpatialMCDropout1D",
    "SpatialMCDropout2D",
    "SpatialMCDropout3D",
    "StochasticLayer",
    "VariationalLayer",
]
