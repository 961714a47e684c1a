import os
import tempfile

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import tfp_uq
from tfp_uq import _keras_compat, convert, layers

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
    before = model(X, training=False)
    converted = tfp_uq.bayesianize(model, method=method, moped_delta=1e-6, dropout_rate=0.0, seed=0)
    assert len(converted.layers) == len(model.layers)
    assert _names_and_shapes(converted) == _names_and_shapes(model)
    np.testing.assert_allclose(converted(X, training=False), before, atol=1e-4)
    np.testing.assert_array_equal(model(X, training=False), before)  # original untouched
    kinds = {type(l).__name__ for l in _keras_compat.walk_layers(converted)}
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
    kinds = [type(l).__name__ for l in _keras_compat.walk_layers(converted)]
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


def test_causal_conv1d_converts_and_keeps_predictions():
    x = np.random.default_rng(4).normal(size=(3, 10, 2)).astype("float32")
    model = keras.Sequential(
        [keras.Input((10, 2)), keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), keras.layers.Dense(1)]
    )
    converted = tfp_uq.bayesianize(model, moped_delta=1e-6, seed=0)
    assert converted.layers[0].padding == "causal"
    np.testing.assert_allclose(converted(x, training=False), model(x, training=False), atol=1e-4)


def test_grouped_conv_converts_and_keeps_predictions():
    x = np.random.default_rng(5).normal(size=(3, 6, 6, 4)).astype("float32")
    model = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.Conv2D(4, 3, groups=2), keras.layers.Flatten()])
    converted = tfp_uq.bayesianize(model, moped_delta=1e-6, seed=0)
    assert converted.layers[0].groups == 2
    np.testing.assert_allclose(converted(x, training=False), model(x, training=False), atol=1e-4)


# ------------------------------------------------------- every parameter layer
def _parameters(layer_list):
    return sum(int(np.prod(v.shape)) for layer in layer_list for v in layer.trainable_weights)


def _convertible_parameters(model):
    return _parameters(
        [layer for layer in _keras_compat.walk_layers(model, include_self=False) if type(layer) in convert._TWINS]
    )


def _bayesian_parameters(model):
    bayesian = [layer for layer in _keras_compat.walk_layers(model) if isinstance(layer, layers.BayesianLayer)]
    return sum(int(np.prod(p.loc.shape)) for layer in bayesian for p in layer.posteriors.values())


def _assert_converted_and_equal(model, x, check_outputs=True, **kwargs):
    """Converts `model`: every parameter of its convertible layers gets a posterior, and the means predict as it did."""
    before = keras.ops.convert_to_numpy(model(x, training=False))
    convertible = _convertible_parameters(model)
    converted = tfp_uq.bayesianize(model, seed=0, **kwargs)
    assert _bayesian_parameters(converted) == convertible  # 100% of the convertible layers' parameters
    assert not [layer.name for layer in _keras_compat.walk_layers(converted) if type(layer) in convert._TWINS]
    if check_outputs:
        tfp_uq.set_deterministic(converted)
        np.testing.assert_allclose(converted(x, training=False), before, rtol=1e-4, atol=1e-5)
    return converted


def _unet():
    inputs = keras.Input((16, 16, 1))
    down = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    bottom = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(down))
    up = keras.layers.Conv2DTranspose(4, 2, strides=2, padding="same")(bottom)
    merged = keras.layers.Concatenate()([down, keras.layers.DepthwiseConv2D(3, padding="same")(up)])
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(merged))


def test_unet_with_transposed_separable_and_depthwise_convolutions_converts_fully():
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    converted = _assert_converted_and_equal(_unet(), x)
    kinds = {type(layer).__name__ for layer in converted.layers}
    assert {"Conv2DTransposeFlipout", "SeparableConv2DFlipout", "DepthwiseConv2DFlipout"} <= kinds


@pytest.mark.parametrize("method", ["flipout", "reparameterization"])
def test_lstm_and_gru_regressors_convert_fully(method):
    x = np.random.default_rng(1).normal(size=(8, 10, 3)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((10, 3)),
            keras.layers.Masking(0.0),
            keras.layers.GRU(6, return_sequences=True),
            keras.layers.LSTM(5),
            keras.layers.Dense(1),
        ]
    )
    converted = _assert_converted_and_equal(model, x, method=method, num_examples=8)
    assert {type(layer).__name__ for layer in converted.layers} >= {f"LSTM{method.title()}", f"GRU{method.title()}"}


def test_embedding_converts_under_either_method():
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(7, 3), keras.layers.Flatten()])
    ids = np.array([[1, 2, 0, 6, 2]])
    converted = _assert_converted_and_equal(model, ids, method="flipout")
    assert type(converted.layers[0]) is layers.EmbeddingReparameterization


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "EfficientNetB0", "MobileNetV3Small"])
def test_keras_applications_convert_every_parameter_layer(name):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    # The first call of a converted model compiles each layer's KL (~0.3 s a layer):
    # the outputs are compared on the model with depthwise convolutions only.
    converted = _assert_converted_and_equal(model, x, check_outputs=name == "MobileNetV3Small")
    left = {type(layer).__name__ for layer in _keras_compat.walk_layers(converted) if layer.trainable_weights}
    assert left - {"Functional", "BatchNormalization"} <= {
        "Conv2DFlipout", "DenseFlipout", "DepthwiseConv2DFlipout"
    }  # fmt: skip


# ------------------------------------------------------------- in place
def _attention_model():
    inputs = keras.Input((6, 8))
    attended = keras.layers.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(attended + inputs))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled))


def test_layers_of_custom_layers_are_replaced_in_place_in_the_copy_and_saved():
    model = _attention_model()
    x = np.random.default_rng(3).normal(size=(3, 6, 8)).astype("float32")
    converted = _assert_converted_and_equal(model, x)
    attention = converted.get_layer("attention")
    assert type(attention._query_dense) is layers.EinsumDenseFlipout
    assert type(model.get_layer("attention")._query_dense) is keras.layers.EinsumDense  # the original is kept
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    converted.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("attention")._output_dense) is layers.EinsumDenseFlipout
    tfp_uq.set_deterministic(loaded)
    np.testing.assert_allclose(loaded(x), converted(x), rtol=1e-6)


def test_layer_filter_picks_only_the_attention_projections_and_lora_covers_einsum_dense():
    model = _attention_model()
    converted = tfp_uq.bayesianize(model, method="lora", layer_filter=lambda layer: layer.name != "head", seed=0)
    attention = converted.get_layer("attention")
    projections = [attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense]
    assert all(type(p) is layers.BayesianLoRA and type(p.layer) is keras.layers.EinsumDense for p in projections)
    assert type(converted.get_layer("head")) is keras.layers.Dense


@keras.saving.register_keras_serializable(package="tests")
class TinyNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Dense(4, activation="relu"), keras.layers.Dense(4, activation="relu")]
        self.out = keras.layers.Dense(1)

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def test_subclassed_model_is_converted_in_place_and_round_trips():
    model = TinyNet()
    x = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    converted = _assert_converted_and_equal(model, x, num_examples=5)
    assert converted is model
    assert [type(b) for b in model.blocks] == [layers.DenseFlipout] * 2 and type(model.out) is layers.DenseFlipout
    model.compile("adam", "mse", jit_compile=False)
    model.fit(x, x[:, :1], verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "net.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, TinyNet) and type(loaded.out) is layers.DenseFlipout
    tfp_uq.set_deterministic(loaded)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_a_layer_held_where_it_cannot_be_replaced_is_named():
    class Holder(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.group = {keras.layers.Dense(2, name="in_a_set")}

        def call(self, x):
            return next(iter(self.group))(x)

    model = keras.Sequential([keras.Input((3,)), Holder(name="holder")])
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="'in_a_set'.*'holder'"):
        tfp_uq.bayesianize(model)


# Keras warns that the model is built with a sublayer never called: the point of the test.
@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer")
def test_a_layer_never_built_cannot_be_converted_in_place():
    class Spare(TinyNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.spare = keras.layers.Dense(2, name="spare")  # never called

    model = Spare()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="'spare'.*not built"):
        tfp_uq.bayesianize(model)


def test_recurrent_dropout_is_refused_naming_the_layer_and_the_alternative():
    model = keras.Sequential([keras.Input((4, 2)), keras.layers.LSTM(3, recurrent_dropout=0.2, name="rnn")])
    with pytest.raises(ValueError, match="'rnn'.*recurrent_dropout.*MCDropout"):
        tfp_uq.bayesianize(model)


# ---------------------------------------------------------------- keras-hub
def _backbone(kind):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    sizes = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
    if kind == "bert":
        return keras_hub.models.BertBackbone(**sizes, max_sequence_length=8), "pooled_output"
    return keras_hub.models.GPT2Backbone(**sizes, max_sequence_length=8), None


def _token_inputs(kind):
    rng = np.random.default_rng(5)
    inputs = {"token_ids": rng.integers(1, 50, (4, 8)).astype("int32"), "padding_mask": np.ones((4, 8), "int32")}
    if kind == "bert":
        inputs["segment_ids"] = np.zeros((4, 8), "int32")
    return inputs


# Each backbone under one method and each method on one backbone: a case
# costs half a minute (mostly the traced training step of a Bayesian transformer).
@pytest.mark.slow
@pytest.mark.parametrize("kind, method", [("bert", "flipout"), ("gpt2", "lora")])
def test_keras_hub_backbone_converts_in_place_trains_and_round_trips(kind, method):
    backbone, key = _backbone(kind)
    x = _token_inputs(kind)

    def features(model, inputs):
        outputs = model(inputs)
        return outputs[key] if key else outputs[:, 0]

    before = keras.ops.convert_to_numpy(features(backbone, x))
    assert tfp_uq.bayesianize(backbone, method=method, num_examples=4, seed=0) is backbone
    kinds = {type(layer).__name__ for layer in _keras_compat.walk_layers(backbone)}
    expected = {"BayesianLoRA"} if method == "lora" else {"EinsumDenseFlipout", "DenseFlipout"}
    assert expected <= kinds and "EinsumDense" not in kinds - {"BayesianLoRA"} or method == "lora"
    tfp_uq.set_deterministic(backbone)
    np.testing.assert_allclose(features(backbone, x), before, rtol=1e-4, atol=1e-5)
    tfp_uq.set_deterministic(backbone, False)
    inputs = {name: keras.Input((8,), dtype="int32", name=name) for name in x}
    regressor = keras.Model(inputs, keras.layers.Dense(1)(features(backbone, inputs)))
    regressor.compile("adam", "mse", jit_compile=False)
    trainable = [np.array(v) for v in backbone.trainable_weights]
    regressor.fit(x, np.ones((4, 1)), verbose=0)
    assert any(not np.allclose(a, np.array(v)) for a, v in zip(trainable, backbone.trainable_weights))
    path = os.path.join(tempfile.mkdtemp(), "backbone.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == type(backbone).__name__ and isinstance(loaded, convert.Bayesianized)
    tfp_uq.set_deterministic(loaded)
    tfp_uq.set_deterministic(backbone)
    np.testing.assert_allclose(features(loaded, x), features(backbone, x), rtol=1e-5, atol=1e-6)
