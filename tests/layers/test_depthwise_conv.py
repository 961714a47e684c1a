import keras
import numpy as np
import pytest
from _moments import assert_moments, randomise

import tfp_uq
from tfp_uq import layers

CASES = [
    (layers.DepthwiseConv1DReparameterization, (7, 2), dict(depth_multiplier=2)),
    (layers.DepthwiseConv1DFlipout, (7, 2), dict(padding="same", strides=2)),
    (layers.DepthwiseConv2DReparameterization, (5, 5, 2), dict(padding="same")),
    (layers.DepthwiseConv2DFlipout, (5, 5, 2), dict(depth_multiplier=2, dilation_rate=2)),
]
IDS = [cls.__name__ for cls, _, _ in CASES]


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_linear_depthwise_predictive_moments_match_closed_form(cls, shape, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1,) + shape).astype("float32")
    layer = cls(3, posterior_scale_init=0.3, kl_weight=0.0, seed=4, **kwargs)
    layer.build(x.shape)
    randomise(layer, rng)
    scale = layer.posterior_scale("kernel")
    exact_mean = (layer._linear(x, layer.kernel) + layer.bias).numpy()
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    assert_moments(layer, x, exact_mean, exact_var)


@pytest.mark.parametrize("cls, shape, kwargs", CASES, ids=IDS)
def test_posterior_mean_equals_keras_depthwise_conv(cls, shape, kwargs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2,) + shape).astype("float32")
    ours = cls(3, deterministic=True, kl_weight=0.0, **kwargs)
    theirs = getattr(keras.layers, f"DepthwiseConv{cls.rank}D")(3, **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    randomise(ours, rng)
    assert ours.kernel.shape == theirs.kernel.shape
    theirs.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape((None,) + shape) == tuple(theirs.compute_output_shape((None,) + shape))


def test_vectorised_predict_matches_closed_form_variance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    layer = layers.DepthwiseConv2DFlipout(3, depth_multiplier=2, posterior_scale_init=0.3, kl_weight=0.0, seed=0)
    model = keras.Sequential([keras.Input((4, 4, 3)), layer])
    scale = layer.posterior_scale("kernel")
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    result = tfp_uq.predict(model, x, num_samples=1200, seed=0, task="regression")
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.15)


def test_config_uses_keras_argument_names():
    config = layers.DepthwiseConv2DFlipout(3, depth_multiplier=2, depthwise_initializer="he_normal").get_config()
    assert config["depth_multiplier"] == 2 and "kernel_initializer" not in config
    assert config["depthwise_initializer"]["class_name"] == "HeNormal"
    assert layers.DepthwiseConv2DFlipout.from_config(config).depth_multiplier == 2


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"kernel_size": 3, "depth_multiplier": 0}, "depth_multiplier"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": 3, "depthwise_regularizer": "l2"}, "depthwise_regularizer"),
        ({"kernel_size": 3, "depthwise_constraint": "non_neg"}, "depthwise_constraint"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        layers.DepthwiseConv2DReparameterization(**kwargs)
