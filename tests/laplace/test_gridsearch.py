"""The prior grid search: the validation-NLL minimiser of the closed-form linear-regression predictive."""

import numpy as np
import pytest
from conftest import design, linear_model, linear_regression_data, ridge_posterior

from tfp_uq import laplace

NOISE = 0.5


def test_gridsearch_picks_the_prior_with_the_least_validation_nll():
    # 8 training points: the weights are uncertain enough for the prior to matter on 300 validation points.
    x, y = linear_regression_data(n=8, seed=0)
    x_val, y_val = linear_regression_data(n=300, seed=7)
    mean, _ = ridge_posterior(x, y, 1.0, NOISE)
    posterior = laplace.fit(
        linear_model(mean),
        (x, y),
        subset="all",
        hessian="full",
        noise_scale=NOISE,
        prior_precision="gridsearch",
        validation_data=(x_val, y_val),
        verbose=0,
    )
    features, validation = design(x), design(x_val)
    scores = []
    for prior in laplace.gridsearch.GRID:
        covariance = np.linalg.inv(features.T @ features / NOISE**2 + prior * np.eye(4))
        variance = np.einsum("ni,ij,nj->n", validation, covariance, validation) + NOISE**2
        residual = y_val - validation @ mean
        scores.append(0.5 * np.sum(np.log(2 * np.pi * variance) + residual**2 / variance))
    assert posterior.prior_precision == pytest.approx(laplace.gridsearch.GRID[int(np.argmin(scores))])
    assert 0 < int(np.argmin(scores)) < len(scores) - 1  # an interior minimum (12.6): the search decided something


def test_gridsearch_and_validation_data_go_together(regression_data):
    model = linear_model(np.zeros(4))
    with pytest.raises(ValueError, match="prior_precision='gridsearch' and validation_data go together"):
        laplace.fit(model, regression_data, prior_precision="gridsearch", verbose=0)
    with pytest.raises(ValueError, match="prior_precision='gridsearch' and validation_data go together"):
        laplace.fit(model, regression_data, validation_data=regression_data, verbose=0)
    with pytest.raises(ValueError, match="searches one scalar"):
        laplace.fit(
            model,
            regression_data,
            prior_precision="gridsearch",
            prior_structure="layerwise",
            validation_data=regression_data,
            verbose=0,
        )
