import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import layers

CASES = [
    (layers.Conv1DReparameterization, (7, 2)),
    (layers.Conv1DFlipout, (7, 2)),
    (layers.Conv2DReparameterization, (5, 5, 2)),
    (layers.Conv2DFlipout, (5, 5, 2)),
    (layers.Conv3DReparameterization, (4, 4, 4, 1)),
    (layers.Conv3DFlipout, (4, 4, 4, 1)),
]


def _layer(cls, **kwargs):
    layer = cls(2, 3, padding="same", posterior_scale_init=0.3, kl_weight=0.0, seed=4, **kwargs)
    return layer


@pytest.mark.parametrize("cls, shape", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_sampled_outputs_keep_their_static_shape_in_graphs(cls, shape):
    layer = cls(1, 3, kl_weight=0.1)
    input_shape = (None,) + shape
    layer.build(input_shape)
    traced = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec(input_shape))
    assert tuple(traced.structured_outputs.shape) == layer.compute_output_shape(input_shape)


@pytest.mark.parametrize("cls, shape", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_linear_conv_predictive_moments_match_closed_form(cls, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1,) + shape).astype("float32")
    layer = _layer(cls)
    layer.build(x.shape)
    for variable in layer.trainable_weights:
        variable.assign(variable + rng.normal(0.0, 0.2, variable.shape).astype("float32"))
    scale = layer.posterior_scale("kernel")
    exact_mean = (layer._linear(x, layer.kernel) + layer.bias).numpy()
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()

    copies, calls = 16, 800
    tiled = tf.constant(np.repeat(x, copies, axis=0))

    @tf.function
    def moments():
        total = tf.zeros((copies,) + exact_mean.shape[1:])
        total_sq = tf.zeros_like(total)
        for _ in tf.range(calls):
            y = layer(tiled)
            total += y
            total_sq += y * y
        return tf.reduce_sum(total, 0), tf.reduce_sum(total_sq, 0)

    total, total_sq = (t.numpy() for t in moments())
    mean = total / (copies * calls)
    var = total_sq / (copies * calls) - mean**2
    np.testing.assert_allclose(mean, exact_mean[0], atol=5 * np.sqrt(exact_var.max() / calls))
    np.testing.assert_allclose(var, exact_var[0], rtol=0.2)


def test_vectorised_predict_of_conv_matches_closed_form_variance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 6, 2)).astype("float32")
    layer = _layer(layers.Conv2DReparameterization)
    model = keras.Sequential([keras.Input((6, 6, 2)), layer])
    scale = layer.posterior_scale("kernel")
    exact_var = (layer._linear(x**2, scale**2) + layer.posterior_scale("bias") ** 2).numpy()
    result = tfp_uq.predict(model, x, num_samples=1500, seed=0, task="regression")
    # Relative standard error of a variance from 1500 draws: sqrt(2 / 1500) = 3.7%.
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.15)


def test_channels_first_matches_channels_last():
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
    last = layers.Conv2DFlipout(4, 3, deterministic=True, kl_weight=0.0)
    first = layers.Conv2DFlipout(4, 3, data_format="channels_first", deterministic=True, kl_weight=0.0)
    last.build(x.shape)
    first.build((2, 3, 6, 6))
    first.set_weights(last.get_weights())
    np.testing.assert_allclose(
        first(np.transpose(x, (0, 3, 1, 2))), np.transpose(last(x), (0, 3, 1, 2)), rtol=1e-4, atol=1e-5
    )


def test_output_shape_equals_keras_conv():
    for kwargs in [dict(strides=2), dict(padding="same", strides=2), dict(dilation_rate=2)]:
        ours = layers.Conv2DFlipout(3, 3, **kwargs)
        theirs = keras.layers.Conv2D(3, 3, **kwargs)
        assert ours.compute_output_shape((None, 11, 9, 2)) == theirs.compute_output_shape((None, 11, 9, 2))
        assert (
            tuple(ours(np.zeros((1, 11, 9, 2), "float32")).shape[1:])
            == theirs.compute_output_shape((None, 11, 9, 2))[1:]
        )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kwargs", [dict(dilation_rate=2), dict(strides=2)])
def test_causal_conv1d_equals_keras_and_ignores_the_future(data_format, kwargs):
    rng = np.random.default_rng(3)
    shape = (2, 9, 3) if data_format == "channels_last" else (2, 3, 9)
    x = rng.normal(size=shape).astype("float32")
    ours = layers.Conv1DFlipout(4, 3, padding="causal", data_format=data_format, kl_weight=0.0, seed=1, **kwargs)
    theirs = keras.layers.Conv1D(4, 3, padding="causal", data_format=data_format, **kwargs)
    theirs.build(shape)
    ours.build(shape)
    ours.kernel.assign(rng.normal(size=theirs.kernel.shape).astype("float32"))
    ours.bias.assign(rng.normal(size=(4,)).astype("float32"))
    theirs.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    ours.deterministic = True
    # Keras 3.15's own channels_first Conv1D fails on a CPU outside XLA (TensorFlow's
    # CPU convolution is NHWC only): its reference outputs are computed under XLA.
    reference = tf.function(theirs, jit_compile=True)(x)
    np.testing.assert_allclose(ours(x), reference, rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape(shape) == theirs.compute_output_shape(shape)
    # Sampled outputs up to time t depend only on inputs up to t.
    ours.deterministic = False
    time_axis = 1 if data_format == "channels_last" else 2
    changed = x.copy()
    np.moveaxis(changed, time_axis, 0)[5:] += 10.0
    seed = ours.seed_generator.state.numpy()
    before = ours(x).numpy()
    ours.seed_generator.state.assign(seed)
    after = ours(changed).numpy()
    steps = 5 // kwargs.get("strides", 1) + (5 % kwargs.get("strides", 1) > 0)
    np.testing.assert_array_equal(np.moveaxis(after, time_axis, 0)[:steps], np.moveaxis(before, time_axis, 0)[:steps])
    assert not np.allclose(after, before)


@pytest.mark.parametrize("cls", [layers.Conv2DFlipout, layers.Conv1DReparameterization])
def test_grouped_conv_equals_keras_and_has_the_closed_form_variance(cls):
    rng = np.random.default_rng(5)
    shape = (2, 6, 6, 4) if cls.rank == 2 else (2, 9, 4)
    x = rng.normal(size=shape).astype("float32")
    ours = cls(6, 3, groups=2, posterior_scale_init=0.2, kl_weight=0.0, seed=0)
    theirs = getattr(keras.layers, f"Conv{cls.rank}D")(6, 3, groups=2)
    ours.build(shape)
    theirs.build(shape)
    assert ours.kernel.shape == theirs.kernel.shape  # (..., 4 // 2 inputs per group, 6)
    ours.kernel.assign(rng.normal(size=ours.kernel.shape).astype("float32"))
    theirs.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    ours.deterministic = True
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    ours.deterministic = False
    model = keras.Sequential([keras.Input(shape[1:]), ours])
    result = tfp_uq.predict(model, x, num_samples=1500, seed=0, task="regression")
    exact_var = (ours._linear(x**2, ours.posterior_scale("kernel") ** 2) + ours.posterior_scale("bias") ** 2).numpy()
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.15)
    assert type(ours).from_config(ours.get_config()).groups == 2


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"filters": 0, "kernel_size": 3}, ValueError, "filters"),
        ({"filters": 2, "kernel_size": 0}, ValueError, "kernel_size"),
        ({"filters": 2, "kernel_size": (3, 3, 3)}, ValueError, "kernel_size"),
        ({"filters": 2, "kernel_size": 3, "padding": "causal"}, ValueError, "padding"),
        ({"filters": 2, "kernel_size": 3, "data_format": "nhwc"}, ValueError, "data_format"),
        ({"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, ValueError, "dilation_rate"),
        ({"filters": 3, "kernel_size": 3, "groups": 2}, ValueError, "groups"),
        ({"filters": 2, "kernel_size": 3, "groups": 0}, ValueError, "groups"),
    ],
)
def test_bad_arguments_raise(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        layers.Conv2DFlipout(**kwargs)


def test_input_channels_not_divisible_by_groups_raise():
    with pytest.raises(ValueError, match="groups"):
        layers.Conv2DFlipout(4, 3, groups=2).build((None, 5, 5, 3))


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match="rank 4"):
        layers.Conv2DFlipout(2, 3).build((None, 5, 2))
