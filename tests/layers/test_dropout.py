import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq import layers

X = np.random.default_rng(0).normal(size=(50, 6)).astype("float32")


def _linear_dropout_model(rate=0.3):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, use_bias=False),
            layers.MCDropout(rate, seed=1),
            keras.layers.Dense(2),
        ]
    )


def test_mc_dropout_stays_on_in_predict_and_averages_to_deterministic_output():
    model = _linear_dropout_model()
    assert not np.allclose(model.predict(X, verbose=0), model.predict(X, verbose=0))
    result = tfp_uq.predict(model, X, num_samples=4000, seed=0, task="regression")
    tfp_uq.set_deterministic(model)
    deterministic = model.predict(X, verbose=0)
    std_error = np.sqrt(result.epistemic_variance / 4000)
    assert np.all(np.abs(result.mean - deterministic) < 5 * std_error + 1e-6)


def test_mc_dropout_drops_at_the_rate_and_rescales():
    out = layers.MCDropout(0.25, seed=3)(np.ones((400, 100), "float32")).numpy()
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((out == 0).mean() - 0.25) < 0.01


@pytest.mark.parametrize(
    "cls, shape, axes",
    [
        (layers.SpatialMCDropout1D, (4, 10, 3), (1,)),
        (layers.SpatialMCDropout2D, (4, 6, 6, 3), (1, 2)),
        (layers.SpatialMCDropout3D, (4, 3, 3, 3, 2), (1, 2, 3)),
    ],
)
def test_spatial_dropout_drops_whole_feature_maps(cls, shape, axes):
    out = cls(0.5, seed=2)(np.ones(shape, "float32")).numpy()
    # Constant over the spatial axes: every feature map is kept or dropped whole.
    assert np.all(out.min(axis=axes) == out.max(axis=axes))


def _concrete_rate(num_examples, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-1.0], [0.5], [2.0]]) + rng.normal(size=(num_examples, 1))).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(32, activation="relu"),
            layers.ConcreteDropout(keras.layers.Dense(1), initial_rate=0.2, seed=2),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=num_examples)
    model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=True)
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(1000, seed=0).batch(32)
    model.fit(data, steps_per_epoch=600, epochs=1, shuffle=False, verbose=0)
    return model.layers[-1].rate


@pytest.mark.slow  # trains on three training-set sizes (~22 s)
def test_concrete_dropout_rate_falls_as_the_training_set_grows():
    # Same steps, same noise: only N (so the KL weight 1 / N) changes.
    small, medium, large = (_concrete_rate(n) for n in (30, 300, 3000))
    assert small > medium > large
    assert small > 2 * large


def test_bad_rates_raise():
    with pytest.raises(ValueError, match="rate"):
        layers.MCDropout(1.0)
    with pytest.raises(ValueError, match="initial_rate"):
        layers.ConcreteDropout(keras.layers.Dense(2), initial_rate=0.0)
    with pytest.raises(TypeError, match="layer"):
        layers.ConcreteDropout("dense")
