"""Prior precision and noise by marginal likelihood: the maximiser of the closed-form evidence, and stationarity."""

import keras
import numpy as np
import pytest
from conftest import linear_model, log_evidence, ridge_posterior

from tfp_uq import laplace

NOISE = 0.5


def test_marglik_prior_precision_is_the_evidence_maximiser_on_a_fine_grid(regression_data):
    x, y = regression_data
    grid = np.logspace(-3, 3, 6001)  # steps of 0.1 % in the precision
    best = grid[np.argmax(log_evidence(x, y, grid, NOISE))]
    # At the MAP of the evidence-optimal prior the Laplace evidence's gradient is the exact evidence's.
    model = linear_model(ridge_posterior(x, y, best, NOISE)[0])
    posterior = laplace.fit(model, (x, y), subset="all", hessian="full", noise_scale=NOISE, verbose=0)
    assert abs(np.log(posterior.prior_precision / best)) <= np.log(grid[1] / grid[0])


def test_marglik_learns_prior_and_noise_together_at_the_evidence_maximum(regression_data):
    x, y = regression_data
    priors, noises = np.logspace(-2, 1, 301), np.linspace(0.4, 0.6, 201)
    values = log_evidence(x, y, priors[:, None], noises[None, :])
    row, column = np.unravel_index(np.argmax(values), values.shape)
    best_prior, best_noise = priors[row], noises[column]
    model = linear_model(ridge_posterior(x, y, best_prior, best_noise)[0])
    posterior = laplace.fit(model, (x, y), subset="all", hessian="kron", verbose=0)  # exact here: one output
    assert abs(np.log(posterior.prior_precision / best_prior)) <= np.log(priors[1] / priors[0])
    assert abs(posterior.noise_scale - best_noise) <= noises[1] - noises[0]
    assert posterior.log_marginal_likelihood() == pytest.approx(values.max(), abs=1e-3)


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(150, 4)).astype("float32")
    y = np.argmax(np.tanh(x @ rng.normal(size=(4, 3))) + 0.3 * rng.normal(size=(150, 3)), axis=1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x, y, epochs=15, batch_size=50, verbose=0)
    return model, (x, y)


def _assert_stationary(posterior, values, step=1e-4):
    for index in range(len(values)):
        up, down = values.copy(), values.copy()
        up[index] *= np.exp(step)
        down[index] *= np.exp(-step)
        slope = (posterior.log_marginal_likelihood(up) - posterior.log_marginal_likelihood(down)) / (2 * step)
        assert abs(slope) < 1e-3, (index, slope)


@pytest.mark.parametrize("hessian", ["kron", "diag"])
def test_layerwise_prior_precisions_are_a_stationary_point_above_the_scalar_one(mlp, hessian):
    model, data = mlp
    scalar = laplace.fit(model, data, subset="all", hessian=hessian, verbose=0)
    layerwise = laplace.fit(model, data, subset="all", hessian=hessian, prior_structure="layerwise", verbose=0)
    values = layerwise.prior_precision
    assert values.shape == (2,)
    _assert_stationary(layerwise, values)
    assert layerwise.log_marginal_likelihood() >= scalar.log_marginal_likelihood() - 1e-6
    # The scalar optimum is the layerwise objective restricted to equal precisions.
    assert layerwise.log_marginal_likelihood([scalar.prior_precision] * 2) == pytest.approx(
        scalar.log_marginal_likelihood(), rel=1e-10
    )


def test_a_prior_precision_per_weight_is_at_least_as_good_as_one_per_layer(mlp):
    model, data = mlp
    layerwise = laplace.fit(model, data, subset="all", hessian="diag", prior_structure="layerwise", verbose=0)
    diag = laplace.fit(model, data, subset="all", hessian="diag", prior_structure="diag", verbose=0)
    assert diag.prior_precision.shape == (diag.num_parameters,)
    assert diag.log_marginal_likelihood() >= layerwise.log_marginal_likelihood() - 1e-6


@pytest.mark.parametrize("hessian", ["kron", "diag", "full"])
def test_the_evidence_gradients_are_its_finite_differences(hessian):
    # Two layers, one prior precision each (the full GGN then takes its Cholesky path), and a learned noise.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (np.sin(x[:, :1]) + 0.1 * rng.normal(size=(40, 1))).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    posterior = laplace.fit(
        model, (x, y), subset="all", hessian=hessian, prior_structure="layerwise", prior_precision=[0.7, 2.0], verbose=0
    )
    arguments = (
        posterior.structure,
        posterior.likelihood,
        posterior._statistics(),
        posterior._mean_blocks(),
        "layerwise",
    )
    prior, noise, step = np.array([0.7, 2.0]), 3.0, 1e-6
    _, gradient_prior, gradient_noise = laplace.marglik.value_and_gradients(*arguments, prior, noise)
    for index in range(2):
        shift = np.eye(2)[index] * step
        difference = laplace.marglik.log_marginal_likelihood(*arguments, prior + shift, noise)
        difference -= laplace.marglik.log_marginal_likelihood(*arguments, prior - shift, noise)
        assert gradient_prior[index] == pytest.approx(difference / (2 * step), rel=1e-5)
    difference = laplace.marglik.log_marginal_likelihood(*arguments, prior, noise + step)
    difference -= laplace.marglik.log_marginal_likelihood(*arguments, prior, noise - step)
    assert gradient_noise == pytest.approx(difference / (2 * step), rel=1e-5)
