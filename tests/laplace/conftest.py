"""Shared data and models for the Laplace tests: small, seeded, with closed forms."""

import keras
import numpy as np
import pytest


def linear_regression_data(n=200, d=3, noise_scale=0.5, seed=0):
    """x (n, d), y (n,) float32 of y = x w + b + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5][:d]) + 0.3 + noise_scale * rng.normal(size=n)).astype("float32")
    return x, y


def design(x):
    """[x, 1] in float64: the rows of a Dense layer's (kernel; bias) matrix."""
    return np.concatenate([np.asarray(x, "float64"), np.ones((len(x), 1))], axis=1)


def ridge_posterior(x, y, prior_precision, noise_scale):
    """Exact Gaussian posterior (mean, covariance) of [w; b] for y ~ N(x w + b, noise_scale^2), w, b ~ N(0, 1/prior)."""
    features = design(x)
    precision = features.T @ features / noise_scale**2 + prior_precision * np.eye(features.shape[1])
    covariance = np.linalg.inv(precision)
    return covariance @ features.T @ np.asarray(y, "float64") / noise_scale**2, covariance


def log_evidence(x, y, prior_precision, noise_scale):
    """log N(y; 0, noise^2 I + X X^T / prior): the exact marginal likelihood of the linear model.

    Evaluated in the eigenbasis of X X^T, so that grids of (prior, noise) are cheap; prior and noise broadcast.
    """
    values, basis = np.linalg.eigh(design(x) @ design(x).T)
    projected = np.square(basis.T @ np.asarray(y, "float64"))
    prior, noise = np.broadcast_arrays(np.asarray(prior_precision, "float64"), np.asarray(noise_scale, "float64"))
    variances = noise[..., None] ** 2 + np.maximum(values, 0.0) / prior[..., None]
    return -0.5 * (len(y) * np.log(2 * np.pi) + np.log(variances).sum(-1) + (projected / variances).sum(-1))


def linear_model(weights, loss="mse"):
    """Sequential Dense(1) (no activation) with kernel and bias set from the flat [w; b]."""
    model = keras.Sequential([keras.Input((len(weights) - 1,)), keras.layers.Dense(1)])
    model.compile("sgd", loss)
    model.layers[0].set_weights([np.asarray(weights[:-1], "float32")[:, None], np.asarray(weights[-1:], "float32")])
    return model


@pytest.fixture(scope="module")
def regression_data():
    return linear_regression_data()
