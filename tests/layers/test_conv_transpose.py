import keras
import numpy as np
import pytest
import tensorflow as tf
from _moments import assert_moments, randomise

import tfp_uq
from tfp_uq import layers

CASES = [
    (layers.Conv1DTransposeReparameterization, (5, 2), dict(strides=2)),
    (layers.Conv1DTransposeFlipout, (5, 2), dict(strides=2, padding="same")),
    (layers.Conv2DTransposeReparameterization, (4, 4, 2), dict(strides=2, padding="same")),
    (layers.Conv2DTransposeFlipout, (4, 4, 2), dict(strides=2, output_padding=1)),
    (layers.Conv3DTransposeReparameterization, (3, 3, 3, 1), dict()),
    (layers.Conv3DTransposeFlipout, (3, 3, 3, 1), dict(strides=2, padding="same")),
]
IDS = [cls.__name__ for cls, _, _ in CASES]


def _keras_twin(cls, kwargs):
    return getattr(keras.layers, f"Conv{cls.rank}DTranspose")(2, 3, **kwargs)


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_linear_transposed_conv_predictive_moments_match_closed_form(cls, shape, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1,) + shape).astype("float32")
    layer = cls(2, 3, posterior_scale_init=0.3, kl_weight=0.0, seed=4, **kwargs)
    layer.build(x.shape)
    randomise(layer, rng)
    scale = layer.posterior_scale("kernel")
    exact_mean = (layer._linear(x, layer.kernel) + layer.bias).numpy()
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    assert_moments(layer, x, exact_mean, exact_var)


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_posterior_mean_equals_keras_transposed_conv_with_its_shapes(cls, shape, kwargs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2,) + shape).astype("float32")
    ours, theirs = cls(2, 3, deterministic=True, kl_weight=0.0, **kwargs), _keras_twin(cls, kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    randomise(ours, rng)
    theirs.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    for size in (None, 7):
        input_shape = (None, size) + shape[1:]
        assert ours.compute_output_shape(input_shape) == tuple(theirs.compute_output_shape(input_shape))


def test_channels_first_equals_channels_last():
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32")
    last = layers.Conv2DTransposeFlipout(2, 3, strides=2, deterministic=True, kl_weight=0.0)
    first = layers.Conv2DTransposeFlipout(2, 3, strides=2, data_format="channels_first", deterministic=True)
    last.build(x.shape)
    first.build((2, 3, 4, 4))
    first.set_weights(last.get_weights())
    np.testing.assert_allclose(
        first(np.transpose(x, (0, 3, 1, 2))), np.transpose(last(x), (0, 3, 1, 2)), rtol=1e-5, atol=1e-5
    )


def test_vectorised_predict_matches_closed_form_variance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 3, 2)).astype("float32")
    layer = layers.Conv2DTransposeFlipout(2, 2, strides=2, posterior_scale_init=0.3, kl_weight=0.0, seed=0)
    model = keras.Sequential([keras.Input((3, 3, 2)), layer])
    scale = layer.posterior_scale("kernel")
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    result = tfp_uq.predict(model, x, num_samples=1200, seed=0, task="regression")
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.15)


def test_sampled_outputs_keep_their_static_shape_in_graphs():
    layer = layers.Conv2DTransposeFlipout(1, 3, strides=2, kl_weight=0.1)
    layer.build((None, 4, 4, 2))
    traced = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec((None, 4, 4, 2)))
    assert tuple(traced.structured_outputs.shape) == (None, 9, 9, 1)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"filters": 0, "kernel_size": 3}, "filters"),
        ({"filters": 2, "kernel_size": 3, "padding": "causal"}, "padding"),
        ({"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 2}, "output_padding"),
        ({"filters": 2, "kernel_size": 3, "output_padding": -1}, "output_padding"),
        ({"filters": 2, "kernel_size": 3, "kernel_regularizer": "l2"}, "kernel_regularizer"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        layers.Conv2DTransposeFlipout(**kwargs)
