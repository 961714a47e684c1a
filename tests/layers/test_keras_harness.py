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
STOCHASTIC = dict(expected_num_seed_generators=1, expected_num_losses=0, supports_masking=False)

CASES = {
    "DenseReparameterization": (
        layers.DenseReparameterization, {"units": 3, **BAYESIAN}, (2, 4), (2, 3), 4, VARIATIONAL,
    ),
    "DenseFlipout": (layers.DenseFlipout, {"units": 3, **BAYESIAN}, (2, 5, 4), (2, 5, 3), 4, VARIATIONAL),
    "DenseLocalReparameterization": (
        layers.DenseLocalReparameterization, {"units": 3, "bayesian_bias": False, **BAYESIAN}, (2, 4), (2, 3), 3,
        VARIATIONAL,
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
    "BayesianLoRA": (
        layers.BayesianLoRA, {"layer": keras.layers.Dense(3), "rank": 2, **BAYESIAN}, (2, 4), (2, 3), 4, VARIATIONAL,
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_passes_the_keras_layer_test_harness(name):
    cls, init_kwargs, input_shape, output_shape, num_trainable, expected = CASES[name]
    testing.TestCase().run_layer_test(
        cls,
        init_kwargs,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_num_trainable_weights=num_trainable,
        **expected,
    )
