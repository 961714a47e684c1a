"""Bayesian LSTM and GRU layers: Keras's recurrences, with one weight draw per sequence."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import layers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 6, 4)).astype("float32")
X[0, 4:] = 0.0  # padding that Masking hides
X[2, 2:] = 0.0

PAIRS = [
    (layers.LSTMReparameterization, keras.layers.LSTM),
    (layers.LSTMFlipout, keras.layers.LSTM),
    (layers.GRUReparameterization, keras.layers.GRU),
    (layers.GRUFlipout, keras.layers.GRU),
]
IDS = [ours.__name__ for ours, _ in PAIRS]
VARIANTS = [
    dict(return_sequences=True),
    dict(go_backwards=True),
    dict(return_sequences=True, return_state=True),
    dict(use_bias=False),
]


def _twins(ours_cls, keras_cls, **kwargs):
    """Our layer and Keras's, built on X with the same weights (ours randomised), in masked models."""
    ours = ours_cls(5, kl_weight=0.0, seed=1, **kwargs)
    theirs = keras_cls(5, **kwargs)
    models = [
        keras.Sequential([keras.Input(X.shape[1:]), keras.layers.Masking(0.0), layer]) for layer in (ours, theirs)
    ]
    for variable in ours.trainable_weights:
        variable.assign(variable + RNG.normal(0.0, 0.3, variable.shape).astype("float32"))
    values = {name: posterior.loc.numpy() for name, posterior in ours.posteriors.items()}
    for variable in theirs.weights:
        variable.assign(values[variable.name])
    return ours, theirs, models


def _outputs(model, x=X):
    return [np.asarray(o) for o in keras.tree.flatten(model(x))]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: "-".join(k))
@pytest.mark.parametrize("ours_cls, keras_cls", PAIRS, ids=IDS)
def test_posterior_mean_layer_equals_keras_with_the_same_weights_masking_included(ours_cls, keras_cls, kwargs):
    ours, _, (model, reference) = _twins(ours_cls, keras_cls, **kwargs)
    ours.deterministic = True
    for mine, theirs in zip(_outputs(model), _outputs(reference)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ours_cls, keras_cls", PAIRS, ids=IDS)
def test_sampling_with_posterior_scales_near_zero_equals_keras(ours_cls, keras_cls):
    ours, _, (model, reference) = _twins(ours_cls, keras_cls, return_sequences=True)
    for posterior in ours.posteriors.values():
        # Scale at the 1e-6 floor: a huge curvature (the default scale), or softplus(-20).
        raw = 60.0 if ours.uses_curvature_scale else -20.0
        posterior.rho.assign(np.full(posterior.rho.shape, raw, "float32"))
    np.testing.assert_allclose(_outputs(model)[0], _outputs(reference)[0], atol=1e-4)
    assert not ours.deterministic


def test_gru_without_reset_after_and_lstm_without_forget_bias_equal_keras():
    for ours_cls, keras_cls, kwargs in [
        (layers.GRUFlipout, keras.layers.GRU, dict(reset_after=False)),
        (layers.LSTMReparameterization, keras.layers.LSTM, dict(unit_forget_bias=False)),
    ]:
        ours, _, (model, reference) = _twins(ours_cls, keras_cls, **kwargs)
        ours.deterministic = True
        np.testing.assert_allclose(_outputs(model)[0], _outputs(reference)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [layers.GRUReparameterization, layers.GRUFlipout], ids=lambda c: c.__name__)
def test_gru_uses_one_weight_draw_for_the_whole_sequence(cls):
    # With U = 0 and a constant input, every gate is the same at each step
    # when the weights are drawn once: h_t = z h_{t-1} + (1 - z) c with h_0 = 0,
    # so h_2 - h_1 = (h_1 - h_0)^2 / h_0 for every unit. Weights drawn per
    # step would give each step its own z and c, and break it.
    layer = cls(6, return_sequences=True, posterior_scale_init=0.5, kl_weight=0.0, seed=3)
    x = np.ones((8, 3, 2), "float32")
    layer.build(x.shape)
    recurrent = layer.posteriors["recurrent_kernel"]
    recurrent.loc.assign(np.zeros(recurrent.loc.shape, "float32"))
    recurrent.rho.assign(np.full(recurrent.rho.shape, -30.0, "float32"))
    bias = layer.posteriors["bias"]
    bias.loc.assign(np.zeros(bias.loc.shape, "float32"))
    h = layer(x).numpy().astype("float64")
    np.testing.assert_allclose(h[:, 2] - h[:, 1], (h[:, 1] - h[:, 0]) ** 2 / h[:, 0], rtol=1e-3, atol=1e-6)
    # The eight identical examples share one draw (reparameterization) or get their own (Flipout).
    assert (np.ptp(h, axis=0).max() > 1e-3) == (cls is layers.GRUFlipout)


@pytest.mark.parametrize("cls", [layers.LSTMReparameterization, layers.LSTMFlipout], ids=lambda c: c.__name__)
def test_lstm_uses_one_weight_draw_for_the_whole_sequence(cls):
    # With U = 0 and a constant input the gates hold along the sequence, so the
    # carry obeys c_t = f c_{t-1} + i g: c_3 - c_2 = (c_2 - c_1)^2 / c_1, read
    # from the final states of sequences of 1, 2 and 3 steps under one seed.
    layer = cls(6, return_state=True, posterior_scale_init=0.5, kl_weight=0.0, seed=3)
    layer.build((8, None, 2))
    recurrent = layer.posteriors["recurrent_kernel"]
    recurrent.loc.assign(np.zeros(recurrent.loc.shape, "float32"))
    recurrent.rho.assign(np.full(recurrent.rho.shape, -30.0, "float32"))
    state = layer.seed_generator.state.numpy()
    carries = []
    for steps in (1, 2, 3):
        layer.seed_generator.state.assign(state)
        carries.append(layer(np.ones((8, steps, 2), "float32"))[2].numpy().astype("float64"))
    c1, c2, c3 = carries
    np.testing.assert_allclose(c3 - c2, (c2 - c1) ** 2 / c1, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("cls", [layers.LSTMReparameterization, layers.GRUFlipout], ids=lambda c: c.__name__)
def test_vectorised_predict_has_the_variance_of_separate_calls(cls):
    layer = cls(3, posterior_scale_init=0.3, kl_weight=0.0, seed=2)
    model = keras.Sequential([keras.Input(X.shape[1:]), keras.layers.Masking(0.0), layer])
    result = tfp_uq.predict(model, X, num_samples=600, seed=0, task="regression")
    calls = 400

    @tf.function
    def moments():
        total = total_sq = tf.zeros((len(X), 3))
        for _ in tf.range(calls):
            y = model(X)
            total, total_sq = total + y, total_sq + y * y
        return total / calls, total_sq / calls

    mean, mean_sq = (t.numpy() for t in moments())
    variance = mean_sq - mean**2
    np.testing.assert_allclose(result.epistemic_variance, variance, rtol=0.35)
    np.testing.assert_allclose(result.mean, mean, atol=5 * np.sqrt(variance.max() * (1 / calls + 1 / 600)))


def test_stateful_layer_carries_its_state_as_keras_does():
    ours, theirs = layers.LSTMFlipout(4, stateful=True, deterministic=True), keras.layers.LSTM(4, stateful=True)
    x = X[:, :3]
    ours.build(x.shape)
    theirs.build(x.shape)
    for variable in theirs.weights:
        variable.assign(ours.posteriors[variable.name].loc)
    for _ in range(2):  # the second call starts from the first call's final state
        np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "cls, jit_compile",
    [
        pytest.param(layers.LSTMFlipout, True, marks=pytest.mark.slow, id="LSTMFlipout-xla"),
        pytest.param(layers.GRUReparameterization, False, id="GRUReparameterization"),
    ],
)
def test_masked_regressor_trains_and_round_trips_keras_files(cls, jit_compile):
    model = keras.Sequential(
        [keras.Input(X.shape[1:]), keras.layers.Masking(0.0), cls(4, seed=0), layers.DenseFlipout(1, seed=1)]
    )
    tfp_uq.set_kl_weight(model, num_examples=30)
    model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=jit_compile)
    y = X.sum(axis=(1, 2))[:, None]
    history = model.fit(X, y, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["kl_loss"][0] > 0
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    first = tfp_uq.predict(model, X, num_samples=8, seed=4, task="regression")
    again = tfp_uq.predict(loaded, X, num_samples=8, seed=4, task="regression")
    np.testing.assert_array_equal(first.samples, again.samples)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dropout": 0.2}, "dropout=0.2.*MCDropout"),
        ({"recurrent_dropout": 0.2}, "recurrent_dropout=0.2.*MCDropout"),
        ({"use_cudnn": True}, "use_cudnn"),
        ({"recurrent_regularizer": "l2"}, "recurrent_regularizer"),
        ({"units": 0}, "units"),
    ],
)
def test_arguments_the_estimator_cannot_honour_raise_naming_the_alternative(kwargs, match):
    kwargs = {"units": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        layers.LSTMFlipout(**kwargs)
