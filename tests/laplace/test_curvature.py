"""The GGN and its structures against closed forms: Hessians of linear models, KFAC where it is exact."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import design, linear_model, ridge_posterior

from tfp_uq import laplace


def _curvature(posterior, key):
    return posterior.structure.statistics[key]


def _nll_hessian(x, y, matrix, link):
    """Hessian in the flat (kernel; bias) matrix of the summed NLL of a one-layer model (float64 autodiff)."""
    features = tf.constant(design(x))
    shape = matrix.shape

    def nll(flat):
        logits = features @ tf.reshape(flat, shape)
        if link == "softmax":
            return -tf.reduce_sum(tf.gather(tf.nn.log_softmax(logits), y, batch_dims=1))
        labels = tf.constant(y, tf.float64)[:, None]
        return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))

    flat = tf.constant(matrix.reshape(-1), tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(flat)
        with tf.GradientTape() as inner:
            inner.watch(flat)
            value = nll(flat)
        gradient = inner.gradient(value, flat)
    return outer.jacobian(gradient, flat).numpy()


def _classification_data(classes, n=120, d=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


@pytest.mark.parametrize("classes", [3, 1])
def test_ggn_of_a_linear_classifier_is_its_hessian(classes):
    x, y = _classification_data(max(classes, 2))
    link, loss = ("softmax", "sparse_categorical_crossentropy") if classes > 1 else ("sigmoid", "binary_crossentropy")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(classes, activation=link)])
    model.compile("sgd", loss)
    posterior = laplace.fit(model, (x, y), subset="all", hessian="full", prior_precision=1.0, verbose=0)
    block = posterior.blocks[0]
    matrix = np.concatenate([block.kernel.numpy(), block.bias.numpy()[None]], axis=0).astype("float64")
    np.testing.assert_allclose(_curvature(posterior, "ggn"), _nll_hessian(x, y, matrix, link), rtol=1e-5, atol=1e-6)


def test_ggn_of_linear_regression_is_its_hessian(regression_data):
    x, y = regression_data
    mean, _ = ridge_posterior(x, y, 1.0, 1.0)
    posterior = laplace.fit(linear_model(mean), (x, y), subset="all", hessian="full", prior_precision=1.0, verbose=0)
    # Unit noise: the Hessian of 1/2 sum (y - f)^2 is X^T X.
    np.testing.assert_allclose(_curvature(posterior, "ggn"), design(x).T @ design(x), rtol=1e-6)


def test_kfac_equals_the_full_ggn_for_one_dense_layer_with_one_output(regression_data):
    x, y = regression_data
    mean, _ = ridge_posterior(x, y, 1.0, 0.5)
    model = linear_model(mean)
    kwargs = {"subset": "all", "prior_precision": 1.0, "noise_scale": 0.5, "verbose": 0}
    kron = laplace.fit(model, (x, y), hessian="kron", **kwargs)
    full = laplace.fit(model, (x, y), hessian="full", **kwargs)
    factors = np.kron(_curvature(kron, "rows_0"), _curvature(kron, "columns_0"))
    np.testing.assert_allclose(factors, _curvature(full, "ggn"), rtol=1e-6)
    np.testing.assert_allclose(kron.covariance(), full.covariance(), rtol=1e-6, atol=1e-9)
    assert kron.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-9)


@pytest.mark.parametrize("num_examples", [1, 24])
def test_kfac_equals_the_full_ggn_for_dense_layers_with_many_outputs_when_every_input_is_the_same(num_examples):
    # One input for every example: the GGN block sum_n a a^T (x) G_n is A (x) G exactly, with A the mean (not the
    # sum) of a a^T and G the sum (not the mean) of G_n. 24 examples in batches of 16 (one padded) check that
    # scaling by N across batches; one summed or averaged the wrong way would be 24 times off.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    x = np.repeat(rng.normal(size=(1, 3)), num_examples, axis=0).astype("float32")
    y = rng.integers(0, 3, size=num_examples)
    kwargs = {"subset": "all", "prior_precision": 1.0, "batch_size": 16, "verbose": 0}
    kron = laplace.fit(model, (x, y), hessian="kron", **kwargs)
    ggn = _curvature(laplace.fit(model, (x, y), hessian="full", **kwargs), "ggn")
    start = 0
    for index, (rows, columns) in enumerate(kron.structure.shapes):
        block = slice(start, start + rows * columns)
        factors = np.kron(_curvature(kron, f"rows_{index}"), _curvature(kron, f"columns_{index}"))
        np.testing.assert_allclose(factors, ggn[block, block], rtol=1e-5, atol=1e-9)
        start += rows * columns
    assert start == len(ggn)


def _small_convnet():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="tanh"),
            keras.layers.Conv2D(2, 2, padding="valid"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _sequence_model():
    return keras.Sequential(
        [
            keras.Input((7, 2)),
            keras.layers.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu"),
            keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d", activation="tanh"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _data_for(model, n=40):
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n,) + tuple(model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 3, size=n)


KWARGS = {"subset": "all", "prior_precision": 1.0, "batch_size": 16, "verbose": 0}


def test_diag_is_the_diagonal_of_the_full_ggn():
    model = _small_convnet()
    data = _data_for(model)
    diag = laplace.fit(model, data, hessian="diag", **KWARGS)
    full = laplace.fit(model, data, hessian="full", **KWARGS)
    diagonal = np.concatenate([_curvature(diag, f"diagonal_{i}").reshape(-1) for i in range(len(diag.blocks))])
    np.testing.assert_allclose(diagonal, np.diag(_curvature(full, "ggn")), rtol=1e-5, atol=1e-9)


def test_layer_graph_and_stateless_autodiff_give_the_same_ggn():
    # Patches and pre-activation gradients read from the layer graph (Conv1D with causal padding and dilation,
    # EinsumDense shared over a sequence axis) against per-example Jacobians of model.stateless_call.
    model = _sequence_model()
    data = _data_for(model)
    graph = laplace.fit(model, data, hessian="full", **KWARGS)

    class Wrapped(keras.Model):  # subclassed: no layer graph to read
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs):
            return self.inner(inputs)

    wrapped = Wrapped(model)
    wrapped.build(data[0].shape)
    wrapped.compile("sgd", "sparse_categorical_crossentropy")
    stateless = laplace.fit(wrapped, data, hessian="full", **KWARGS)
    np.testing.assert_allclose(_curvature(stateless, "ggn"), _curvature(graph, "ggn"), rtol=2e-4, atol=1e-7)


def test_kfac_of_a_convolution_has_the_grosse_martens_factors():
    # KFC: A = sum over examples and output pixels of the patch outer products / (N T), G = sum of gradient outer
    # products over pixels; checked here against patches cut out by hand.
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 2, strides=2), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile("sgd", "mse")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4, 4, 1)).astype("float32")
    y = rng.normal(size=(10, 1)).astype("float32")
    posterior = laplace.fit(
        model, (x, y), subset="all", hessian="kron", prior_precision=1.0, noise_scale=1.0, verbose=0
    )
    patches = np.stack([x[:, i : i + 2, j : j + 2, 0].reshape(10, 4) for i in (0, 2) for j in (0, 2)], axis=1)
    patches = np.concatenate([patches, np.ones((10, 4, 1))], axis=-1).reshape(-1, 5)
    np.testing.assert_allclose(_curvature(posterior, "rows_0"), patches.T @ patches / 40, rtol=1e-5, atol=1e-7)
    # Unit noise and a linear head: the gradient at conv output pixel t, channel c is the head's weight on it.
    head = model.layers[-1].kernel.numpy().reshape(2, 2, 2)  # (pixel row, pixel column, channel) -> output
    per_pixel = head.reshape(4, 2)
    np.testing.assert_allclose(_curvature(posterior, "columns_0"), 10 * per_pixel.T @ per_pixel, rtol=1e-5)


def test_a_softmax_layer_after_the_head_gives_the_logits_of_a_softmax_activation():
    x, y = _classification_data(3)
    fused = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3, activation="softmax")]
    )
    split = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3), keras.layers.Softmax()]
    )
    split.set_weights(fused.get_weights())
    posteriors = []
    for model in (fused, split):
        model.compile("sgd", "sparse_categorical_crossentropy")
        posteriors.append(laplace.fit(model, (x, y), subset="all", hessian="full", prior_precision=1.0, verbose=0))
    np.testing.assert_allclose(_curvature(posteriors[1], "ggn"), _curvature(posteriors[0], "ggn"), rtol=1e-5, atol=1e-8)
    mean_fused, variance_fused = posteriors[0].function_moments(x[:5])
    mean_split, variance_split = posteriors[1].function_moments(x[:5])
    np.testing.assert_allclose(mean_split, mean_fused, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance_split, variance_fused, rtol=1e-4, atol=1e-7)
