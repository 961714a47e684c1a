import keras
import numpy as np
import pytest
from _moments import assert_moments, randomise

import tfp_uq
from tfp_uq import layers

CASES = [
    (layers.SeparableConv1DReparameterization, (7, 2), dict(depth_multiplier=2)),
    (layers.SeparableConv1DFlipout, (7, 2), dict(padding="same")),
    (layers.SeparableConv2DReparameterization, (5, 5, 2), dict(strides=2)),
    (layers.SeparableConv2DFlipout, (5, 5, 2), dict(depth_multiplier=2, padding="same")),
]
IDS = [cls.__name__ for cls, _, _ in CASES]


def _closed_form(layer, x):
    """Mean and variance of pointwise(depthwise(x, D), P) + b with D, P, b independent Normal.

    With z = depthwise(x, D): E z = depthwise(x, mD), Var z = depthwise(x^2,
    sD^2), and the channels of z use disjoint weights, so for y = z @ P + b,
    Var y = (Var z + (E z)^2) @ sP^2 + Var z @ mP^2 + sb^2.
    """
    d_loc, p_loc = layer.depthwise_kernel, layer.pointwise_kernel
    d_scale, p_scale = layer.posterior_scale("depthwise_kernel"), layer.posterior_scale("pointwise_kernel")
    z_mean = layer._linear(x, d_loc, "depthwise_kernel")
    z_var = layer._linear(x**2, d_scale**2, "depthwise_kernel")
    mean = layer._linear(z_mean, p_loc, "pointwise_kernel") + layer.bias
    var = (
        layer._linear(z_var + z_mean**2, p_scale**2, "pointwise_kernel")
        + layer._linear(z_var, p_loc**2, "pointwise_kernel")
        + layer.posterior_scale("bias") ** 2
    )
    return mean.numpy(), var.numpy()


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_separable_predictive_moments_match_closed_form(cls, shape, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1,) + shape).astype("float32")
    layer = cls(3, 3, posterior_scale_init=0.3, kl_weight=0.0, seed=4, **kwargs)
    layer.build(x.shape)
    randomise(layer, rng)
    assert_moments(layer, x, *_closed_form(layer, x))


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_posterior_mean_equals_keras_separable_conv(cls, shape, kwargs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2,) + shape).astype("float32")
    ours = cls(3, 3, deterministic=True, kl_weight=0.0, **kwargs)
    theirs = getattr(keras.layers, f"SeparableConv{cls.rank}D")(3, 3, **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    randomise(ours, rng)
    theirs.set_weights([ours.depthwise_kernel.numpy(), ours.pointwise_kernel.numpy(), ours.bias.numpy()])
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape((None,) + shape) == tuple(theirs.compute_output_shape((None,) + shape))


def test_vectorised_predict_matches_closed_form_variance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 2)).astype("float32")
    layer = layers.SeparableConv2DFlipout(3, 3, padding="same", posterior_scale_init=0.3, kl_weight=0.0, seed=0)
    model = keras.Sequential([keras.Input((4, 4, 2)), layer])
    result = tfp_uq.predict(model, x, num_samples=1200, seed=0, task="regression")
    np.testing.assert_allclose(result.epistemic_variance, _closed_form(layer, x)[1], rtol=0.15)


def test_both_kernels_have_posteriors_and_the_kl_covers_them():
    layer = layers.SeparableConv2DFlipout(3, 3, kl_weight=1.0)
    layer.build((None, 5, 5, 2))
    assert list(layer.posteriors) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    config = layer.get_config()
    assert "kernel_initializer" not in config and {"depthwise_initializer", "pointwise_initializer"} <= set(config)
    closed = sum(
        float(np.sum(0.5 * (s**2 + m**2) - np.log(s) - 0.5))
        for m, s in ((layer.posterior_loc(n).numpy(), layer.posterior_scale(n).numpy()) for n in layer.posteriors)
    )
    np.testing.assert_allclose(float(layer.kl_divergence()), closed, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"filters": 0, "kernel_size": 3}, "filters"),
        ({"filters": 2, "kernel_size": 3, "depth_multiplier": 0}, "depth_multiplier"),
        ({"filters": 2, "kernel_size": 3, "pointwise_regularizer": "l2"}, "pointwise_regularizer"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        layers.SeparableConv2DFlipout(**kwargs)
