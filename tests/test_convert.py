import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import tfp_uq

X = np.random.default_rng(0).normal(size=(6, 8, 8, 1)).astype("float32")


def _functional_with_nested_cnn():
    features = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(name="flat"),
        ],
        name="features",
    )
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(features(inputs))
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(hidden))


def _names_and_shapes(model):
    return [
        (layer.name, tuple(layer.output.shape))
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.mark.parametrize("method", ["flipout", "reparameterization", "mc_dropout"])
def test_conversion_keeps_structure_and_tiny_moped_delta_reproduces_predictions(method):
    model = _functional_with_nested_cnn()
    model.layers[-2].moving_mean.assign(np.full(16, 0.1, "float32"))  # a non-trainable weight to keep
    before = model.predict(X, verbose=0)
    converted = tfp_uq.bayesianize(model, method=method, moped_delta=1e-6, dropout_rate=0.0, seed=0)
    assert len(converted.layers) == len(model.layers)
    assert _names_and_shapes(converted) == _names_and_shapes(model)
    np.testing.assert_allclose(converted.predict(X, verbose=0), before, atol=1e-4)
    np.testing.assert_array_equal(model.predict(X, verbose=0), before)  # original untouched
    kinds = {type(l).__name__ for l in converted._flatten_layers()}
    expected = {
        "flipout": "Conv2DFlipout",
        "reparameterization": "Conv2DReparameterization",
        "mc_dropout": "MCDropoutWrapper",
    }
    assert expected[method] in kinds


def test_moped_sets_posterior_scale_to_delta_times_weight():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    converted = tfp_uq.bayesianize(model, moped_delta=0.1)
    layer = converted.layers[0]
    np.testing.assert_allclose(layer.kernel.numpy(), model.layers[0].kernel.numpy())
    np.testing.assert_allclose(
        layer.posterior_scale("kernel").numpy(),
        np.maximum(0.1 * np.abs(model.layers[0].kernel.numpy()), 2e-6),
        rtol=1e-4,
    )


def test_layer_filter_chooses_layers():
    model = _functional_with_nested_cnn()
    converted = tfp_uq.bayesianize(model, layer_filter=lambda layer: layer.name == "out")
    kinds = [type(l).__name__ for l in converted._flatten_layers()]
    assert kinds.count("DenseFlipout") == 1 and "Conv2D" in kinds


@pytest.mark.slow
def test_converted_cnn_trains_on_digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1200], y[:1200], epochs=3, verbose=0)
    bnn = tfp_uq.bayesianize(model, method="flipout", num_examples=1200)
    bnn.compile(keras.optimizers.Adam(0.005), "sparse_categorical_crossentropy", jit_compile=True)
    history = bnn.fit(x[:1200], y[:1200], epochs=5, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    result = tfp_uq.predict(bnn, x[1200:], num_samples=20, seed=0)
    assert tfp_uq.metrics.accuracy(result.probs, y[1200:]) > 0.85


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="method"):
        tfp_uq.bayesianize(_functional_with_nested_cnn(), method="laplace")


def test_local_reparameterization_rejects_convolutions():
    with pytest.raises(ValueError, match="Dense layers only"):
        tfp_uq.bayesianize(_functional_with_nested_cnn(), method="local_reparameterization")


def test_nothing_to_convert_raises():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match="nothing to convert"):
        tfp_uq.bayesianize(model)


def test_unsupported_option_is_named():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_regularizer="l2", name="reg")])
    with pytest.raises(ValueError, match="kernel_regularizer"):
        tfp_uq.bayesianize(model)


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed"):
        tfp_uq.bayesianize(net)


def test_causal_conv1d_converts_and_keeps_predictions():
    x = np.random.default_rng(4).normal(size=(3, 10, 2)).astype("float32")
    model = keras.Sequential(
        [keras.Input((10, 2)), keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), keras.layers.Dense(1)]
    )
    converted = tfp_uq.bayesianize(model, moped_delta=1e-6, seed=0)
    assert converted.layers[0].padding == "causal"
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


def test_grouped_conv_converts_and_keeps_predictions():
    x = np.random.default_rng(5).normal(size=(3, 6, 6, 4)).astype("float32")
    model = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.Conv2D(4, 3, groups=2), keras.layers.Flatten()])
    converted = tfp_uq.bayesianize(model, moped_delta=1e-6, seed=0)
    assert converted.layers[0].groups == 2
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
