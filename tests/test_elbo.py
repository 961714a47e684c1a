"""The negative ELBO that `model.fit` minimises has the right optimum."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import tfp_uq
from tfp_uq import priors

NOISE = 0.5


def _gaussian_nll(y_true, y_pred):
    # Known noise: -log N(y; f, NOISE^2) up to a constant.
    return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1) / NOISE**2


def _fit_linear(x, y, prior, steps, learning_rate):
    layer = tfp_uq.DenseReparameterization(1, use_bias=False, prior=prior, posterior_scale_init=0.05, seed=3)
    model = keras.Sequential([keras.Input((x.shape[1],)), layer])
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.002)
    model.compile(keras.optimizers.Adam(schedule), _gaussian_nll, jit_compile=True, steps_per_execution=50)
    # One full batch per step; one epoch of `steps` steps avoids per-epoch overhead.
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return layer


def test_vi_recovers_conjugate_linear_regression_posterior():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + NOISE * rng.normal(size=(100, 1))).astype("float32")
    prior_scale = 1.0
    precision = np.eye(3) / prior_scale**2 + x.T.astype("float64") @ x / NOISE**2
    exact_mean = np.linalg.solve(precision, x.T @ y / NOISE**2)[:, 0]
    # The mean-field Gaussian optimum for a Gaussian posterior has the exact
    # mean and variances 1 / diag(precision).
    mean_field_std = 1.0 / np.sqrt(np.diag(precision))

    layer = _fit_linear(x, y, priors.Normal(0.0, prior_scale), steps=3000, learning_rate=0.02)
    loc = layer.kernel.numpy()[:, 0]
    std = layer.posterior_scale("kernel").numpy()[:, 0]
    np.testing.assert_allclose(loc, exact_mean, atol=0.25 * mean_field_std.min())
    np.testing.assert_allclose(std, mean_field_std, rtol=0.1)


def test_hierarchical_prior_shrinks_irrelevant_inputs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 10)).astype("float32")
    y = (2.0 * x[:, :1] - 1.5 * x[:, 1:2] + NOISE * rng.normal(size=(200, 1))).astype("float32")
    layer = _fit_linear(x, y, priors.HierarchicalNormal(granularity="input"), steps=3000, learning_rate=0.02)
    scales = layer.prior.scale(layer.prior_variables("kernel")).numpy()[:, 0]
    loc = np.abs(layer.kernel.numpy()[:, 0])
    assert scales[2:].max() < 0.1 * scales[:2].min()
    assert loc[2:].max() < 0.05
    assert loc[:2].min() > 1.0
