"""Keras's own layer test harness on every public tfp_uq layer.

`run_layer_test` builds each layer eagerly and symbolically, checks its
output shape and dtype, its config round trip, its weights, seed generators
and losses, trains it one step with `fit`, and reruns it under the
`mixed_float16` policy, checking that it computes in float16.
"""

import keras
import pytest
from keras.src import testing  # the harness Keras tests its own layers with

from tfp_uq import layers

# The harness's own fit warns about these; they say nothing about the layers.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed"),
    pytest.mark.filterwarnings("ignore:The model does not have any trainable weights"),
]

BAYESIAN = dict(kl_weight=0.01, seed=1, posterior_scale_init=0.05)
VARIATIONAL = dict(expected_num_seed_generators=1, expected_num_losses=1, supports_masking=False)
RECURRENT = dict(expected_num_seed_generators=1, expected_num_losses=1, supports_masking=True)
DENSE = {**VARIATIONAL, "supports_masking": True}
CONV = {"filters": 2, "kernel_size": 3, **BAYESIAN}
STOCHASTIC = dict(expected_num_seed_generators=1, expected_num_losses=0, supports_masking=False)

CASES = {
    "DenseReparameterization": (
        layers.DenseReparameterization, {"units": 3, **BAYESIAN}, (2, 4), (2, 3), 4, DENSE,
    ),
    "DenseFlipout": (layers.DenseFlipout, {"units": 3, **BAYESIAN}, (2, 5, 4), (2, 5, 3), 4, DENSE),
    "DenseLocalReparameterization": (
        layers.DenseLocalReparameterization, {"units": 3, "bayesian_bias": False, **BAYESIAN}, (2, 4), (2, 3), 3,
        DENSE,
    ),
    "Conv1DReparameterization": (
        layers.Conv1DReparameterization, {"filters": 2, "kernel_size": 3, **BAYESIAN}, (2, 6, 3), (2, 4, 2), 4,
        VARIATIONAL,
    ),
    "Conv1DFlipout": (
        layers.Conv1DFlipout, {"filters": 2, "kernel_size": 3, "padding": "causal", **BAYESIAN}, (2, 6, 3), (2, 6, 2),
        4, VARIATIONAL,
    ),
    "Conv2DReparameterization": (
        layers.Conv2DReparameterization, {"filters": 2, "kernel_size": 3, "padding": "same", **BAYESIAN},
        (2, 5, 5, 3), (2, 5, 5, 2), 4, VARIATIONAL,
    ),
    "Conv2DFlipout": (
        layers.Conv2DFlipout, {"filters": 2, "kernel_size": 3, "strides": 2, **BAYESIAN}, (2, 5, 5, 3), (2, 2, 2, 2),
        4, VARIATIONAL,
    ),
    "Conv3DReparameterization": (
        layers.Conv3DReparameterization, {"filters": 2, "kernel_size": 2, **BAYESIAN}, (2, 3, 3, 3, 1),
        (2, 2, 2, 2, 2), 4, VARIATIONAL,
    ),
    "Conv3DFlipout": (
        layers.Conv3DFlipout, {"filters": 2, "kernel_size": 2, "groups": 2, **BAYESIAN}, (2, 3, 3, 3, 2),
        (2, 2, 2, 2, 2), 4, VARIATIONAL,
    ),
    "Conv1DTransposeReparameterization": (
        layers.Conv1DTransposeReparameterization, {**CONV, "strides": 2}, (2, 4, 3), (2, 9, 2), 4, VARIATIONAL,
    ),
    "Conv1DTransposeFlipout": (
        layers.Conv1DTransposeFlipout, {**CONV, "padding": "same"}, (2, 4, 3), (2, 4, 2), 4, VARIATIONAL,
    ),
    "Conv2DTransposeReparameterization": (
        layers.Conv2DTransposeReparameterization, {**CONV, "strides": 2, "padding": "same"}, (2, 3, 3, 2),
        (2, 6, 6, 2), 4, VARIATIONAL,
    ),
    "Conv2DTransposeFlipout": (
        layers.Conv2DTransposeFlipout, {**CONV, "strides": 2, "output_padding": 1}, (2, 3, 3, 2), (2, 8, 8, 2), 4,
        VARIATIONAL,
    ),
    "Conv3DTransposeReparameterization": (
        layers.Conv3DTransposeReparameterization, {**CONV, "kernel_size": 2}, (2, 2, 2, 2, 1), (2, 3, 3, 3, 2), 4,
        VARIATIONAL,
    ),
    "Conv3DTransposeFlipout": (
        layers.Conv3DTransposeFlipout, {**CONV, "kernel_size": 2, "strides": 2}, (2, 2, 2, 2, 1), (2, 4, 4, 4, 2),
        4, VARIATIONAL,
    ),
    "DepthwiseConv1DReparameterization": (
        layers.DepthwiseConv1DReparameterization, {"kernel_size": 3, "depth_multiplier": 2, **BAYESIAN}, (2, 6, 3),
        (2, 4, 6), 4, VARIATIONAL,
    ),
    "DepthwiseConv1DFlipout": (
        layers.DepthwiseConv1DFlipout, {"kernel_size": 3, "padding": "same", **BAYESIAN}, (2, 6, 3), (2, 6, 3), 4,
        VARIATIONAL,
    ),
    "DepthwiseConv2DReparameterization": (
        layers.DepthwiseConv2DReparameterization, {"kernel_size": 3, "strides": 2, **BAYESIAN}, (2, 5, 5, 2),
        (2, 2, 2, 2), 4, VARIATIONAL,
    ),
    "DepthwiseConv2DFlipout": (
        layers.DepthwiseConv2DFlipout, {"kernel_size": 3, "depth_multiplier": 2, **BAYESIAN}, (2, 5, 5, 2),
        (2, 3, 3, 4), 4, VARIATIONAL,
    ),
    "SeparableConv1DReparameterization": (
        layers.SeparableConv1DReparameterization, CONV, (2, 6, 3), (2, 4, 2), 6, VARIATIONAL,
    ),
    "SeparableConv1DFlipout": (
        layers.SeparableConv1DFlipout, {**CONV, "depth_multiplier": 2}, (2, 6, 3), (2, 4, 2), 6, VARIATIONAL,
    ),
    "SeparableConv2DReparameterization": (
        layers.SeparableConv2DReparameterization, {**CONV, "padding": "same"}, (2, 5, 5, 2), (2, 5, 5, 2), 6,
        VARIATIONAL,
    ),
    "SeparableConv2DFlipout": (
        layers.SeparableConv2DFlipout, {**CONV, "bayesian_bias": False}, (2, 5, 5, 2), (2, 3, 3, 2), 5,
        VARIATIONAL,
    ),
    "EinsumDenseReparameterization": (
        layers.EinsumDenseReparameterization, {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c",
        **BAYESIAN}, (2, 4), (2, 3), 4, VARIATIONAL,
    ),
    "EinsumDenseFlipout": (
        layers.EinsumDenseFlipout, {"equation": "abc,cde->abde", "output_shape": (None, 2, 3), "bias_axes": "de",
        **BAYESIAN}, (2, 5, 4), (2, 5, 2, 3), 4, VARIATIONAL,
    ),
    "EmbeddingReparameterization": (
        layers.EmbeddingReparameterization, {"input_dim": 6, "output_dim": 3, **BAYESIAN}, (2, 5), (2, 5, 3), 2,
        {**VARIATIONAL, "input_dtype": "int32"},
    ),
    "LSTMReparameterization": (
        layers.LSTMReparameterization, {"units": 3, "return_sequences": True, **BAYESIAN}, (2, 5, 4), (2, 5, 3), 6,
        RECURRENT,
    ),
    "LSTMFlipout": (
        layers.LSTMFlipout, {"units": 3, "go_backwards": True, **BAYESIAN}, (2, 5, 4), (2, 3), 6, RECURRENT,
    ),
    "GRUReparameterization": (
        layers.GRUReparameterization, {"units": 3, "reset_after": False, **BAYESIAN}, (2, 5, 4), (2, 3), 6, RECURRENT,
    ),
    "GRUFlipout": (
        layers.GRUFlipout, {"units": 3, "return_sequences": True, **BAYESIAN}, (2, 5, 4), (2, 5, 3), 6, RECURRENT,
    ),
    "BayesianLoRA": (
        layers.BayesianLoRA, {"layer": keras.layers.Dense(3), "rank": 2, **BAYESIAN}, (2, 4), (2, 3), 4, VARIATIONAL,
    ),
    "BayesianLoRA of EinsumDense": (
        layers.BayesianLoRA, {"layer": keras.layers.EinsumDense("ab,bc->ac", 3, bias_axes="c"), "rank": 2,
        **BAYESIAN}, (2, 4), (2, 3), 4, VARIATIONAL,
    ),
    "MCDropout": (layers.MCDropout, {"rate": 0.3, "seed": 1}, (2, 4), (2, 4), 0, STOCHASTIC),
    "SpatialMCDropout1D": (layers.SpatialMCDropout1D, {"rate": 0.3, "seed": 1}, (2, 5, 4), (2, 5, 4), 0, STOCHASTIC),
    "SpatialMCDropout2D": (
        layers.SpatialMCDropout2D, {"rate": 0.3, "seed": 1}, (2, 3, 3, 4), (2, 3, 3, 4), 0, STOCHASTIC,
    ),
    "SpatialMCDropout3D": (
        layers.SpatialMCDropout3D, {"rate": 0.3, "seed": 1}, (2, 2, 2, 2, 4), (2, 2, 2, 2, 4), 0, STOCHASTIC,
    ),
    "MCDropoutWrapper": (
        layers.MCDropoutWrapper, {"layer": keras.layers.Dense(3), "rate": 0.3, "seed": 1}, (2, 4), (2, 3), 2,
        STOCHASTIC,
    ),
    "ConcreteDropout": (
        layers.ConcreteDropout, {"layer": keras.layers.Dense(3), "kl_weight": 0.01, "seed": 1}, (2, 4), (2, 3), 3,
        VARIATIONAL,
    ),
    "GaussianHead": (
        layers.GaussianHead, {}, (2, 4), (2, 4), 0,
        dict(expected_num_seed_generators=0, expected_num_losses=0, supports_masking=False),
    ),
}  # fmt: skip


# Each case costs seconds (two builds, a fit, a mixed-precision rerun): of
# each family of issue 25's layers one runs by default, the rest are slow and
# skip the harness's fit (the representative trained the family's geometry
# and estimator; the mixed-precision rerun still checks every layer's dtypes).
SLOW = {
    "Conv1DTransposeReparameterization", "Conv1DTransposeFlipout", "Conv2DTransposeReparameterization",
    "Conv3DTransposeReparameterization", "Conv3DTransposeFlipout", "DepthwiseConv1DReparameterization",
    "DepthwiseConv1DFlipout", "DepthwiseConv2DReparameterization", "SeparableConv1DReparameterization",
    "SeparableConv1DFlipout", "SeparableConv2DReparameterization", "EinsumDenseReparameterization",
    "LSTMReparameterization", "GRUReparameterization", "GRUFlipout", "BayesianLoRA of EinsumDense",
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in sorted(CASES)]
)
def test_layer_passes_the_keras_layer_test_harness(name):
    cls, init_kwargs, input_shape, output_shape, num_trainable, expected = CASES[name]
    testing.TestCase().run_layer_test(
        cls,
        init_kwargs,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_num_trainable_weights=num_trainable,
        run_training_check=name not in SLOW,
        **expected,
    )
