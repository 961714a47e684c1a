import keras
import numpy as np
import pytest
import tensorflow as tf
from _moments import assert_moments, randomise

import tfp_uq
from tfp_uq import layers
from tfp_uq.layers.einsum_dense import einsum_shapes

# (equation, output_shape, bias_axes, input shape without the batch)
EQUATIONS = [
    ("ab,bc->ac", 3, "c", (4,)),
    ("abc,cde->abde", (None, 2, 3), "de", (5, 4)),  # an attention query projection
    ("abcd,cde->abe", (None, 4), "e", (5, 2, 3)),  # an attention output projection
    ("...b,bc->...c", 3, "c", (2, 5, 4)),
    ("ab...,bc->ac...", (3,), "c", (4, 2)),
]
IDS = [equation for equation, *_ in EQUATIONS]


@pytest.mark.parametrize("equation, output_shape, bias_axes, shape", EQUATIONS, ids=IDS)
def test_shapes_equal_keras_einsum_dense(equation, output_shape, bias_axes, shape):
    theirs = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes)
    theirs.build((2,) + shape)
    shapes = einsum_shapes(equation, bias_axes, (2,) + shape, output_shape)
    assert shapes.kernel == tuple(theirs.kernel.shape)
    assert shapes.bias == tuple(theirs.bias.shape)
    assert shapes.output == tuple(theirs(np.zeros((2,) + shape, "float32")).shape)


@pytest.mark.parametrize("equation, output_shape, bias_axes, shape", EQUATIONS, ids=IDS)
def test_posterior_mean_equals_keras_einsum_dense(equation, output_shape, bias_axes, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + shape).astype("float32")
    ours = layers.EinsumDenseFlipout(equation, output_shape, bias_axes=bias_axes, deterministic=True, kl_weight=0.0)
    theirs = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes)
    ours.build(x.shape)
    theirs.build(x.shape)
    randomise(ours, rng)
    theirs.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [layers.EinsumDenseReparameterization, layers.EinsumDenseFlipout])
@pytest.mark.parametrize("equation, output_shape, bias_axes, shape", EQUATIONS[1:3], ids=IDS[1:3])
def test_linear_einsum_predictive_moments_match_closed_form(cls, equation, output_shape, bias_axes, shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1,) + shape).astype("float32")
    layer = cls(equation, output_shape, bias_axes=bias_axes, posterior_scale_init=0.3, kl_weight=0.0, seed=2)
    layer.build(x.shape)
    randomise(layer, rng)
    scale = layer.posterior_scale("kernel")
    exact_mean = (layer._linear(x, layer.kernel) + layer.bias).numpy()
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    assert_moments(layer, x, exact_mean, exact_var)


def test_flipout_signs_vary_over_kernel_axes_and_hold_along_the_sequence():
    layer = layers.EinsumDenseFlipout("abc,cde->abde", (None, 2, 3), bias_axes="de")
    layer.build((None, 5, 4))
    assert layer._flip_shape((8, 5, 4), "input") == (8, 1, 4)
    assert layer._flip_shape((8, 5, 2, 3), "output") == (8, 1, 2, 3)


def test_vectorised_predict_matches_closed_form_variance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    layer = layers.EinsumDenseFlipout("abc,cde->abde", (None, 2, 3), bias_axes="de", posterior_scale_init=0.3, seed=0)
    model = keras.Sequential([keras.Input((5, 4)), layer])
    scale = layer.posterior_scale("kernel")
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    assert not layer.unrolls_samples  # one einsum over a sample axis
    result = tfp_uq.predict(model, x, num_samples=1500, seed=0, task="regression")
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.15)


def test_flipout_projection_runs_under_xla_with_a_dynamic_sequence_length():
    x = np.random.default_rng(4).normal(size=(3, 5, 8)).astype("float32")
    layer = layers.EinsumDenseFlipout("abc,cde->abde", (None, 2, 4), bias_axes="de", kl_weight=0.1, seed=0)
    layer.build((None, None, 8))
    traced = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    assert tuple(traced(x).shape) == (3, 5, 2, 4)


@pytest.mark.parametrize(
    "equation, output_shape, bias_axes, match",
    [
        ("ab->b", 3, None, "equation"),
        ("ab,bc->ac", (3, 4), None, "output_shape"),
        ("ab,bc->ad", 3, None, "'d'"),
        ("ab,bc->ac", 3, "x", "bias_axes"),
    ],
)
def test_bad_equations_raise_naming_what_does_not_fit(equation, output_shape, bias_axes, match):
    with pytest.raises(ValueError, match=match):
        layers.EinsumDenseFlipout(equation, output_shape, bias_axes=bias_axes).build((None, 4))
