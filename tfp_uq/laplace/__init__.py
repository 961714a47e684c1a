"""Post-hoc Laplace: uncertainty for a Keras model that is already trained, without retraining.

`fit` puts a Gaussian posterior around a trained model's weights (all of
them, its last layer, or named layers) from the curvature of its likelihood
over the training data; the `LaplacePosterior` it returns predicts with the
linearised network or Monte Carlo over weights, through the posterior
protocol that `tfp_uq.predict` and `tfp_uq.export` speak.

Example:

>>> posterior = tfp_uq.laplace.fit(model, (x_train, y_train))   # last-layer KFAC, marginal-likelihood prior
>>> fields = posterior.exact_fields(x_test)[0]                     # probit probabilities
"""

from tfp_uq.laplace import curvature, gridsearch, marglik
from tfp_uq.laplace._structures import FULL_MAX_PARAMETERS
from tfp_uq.laplace.fit import LIKELIHOODS, PRIOR_METHODS, SUBSETS, fit
from tfp_uq.laplace.posterior import LINKS, PREDICTIVES, LaplacePosterior

HESSIANS = curvature.HESSIANS
PRIOR_STRUCTURES = marglik.PRIOR_STRUCTURES

__all__ = [
    "FULL_MAX_PARAMETERS",
    "HESSIANS",
    "LIKELIHOODS",
    "LINKS",
    "PREDICTIVES",
    "PRIOR_METHODS",
    "PRIOR_STRUCTURES",
    "SUBSETS",
    "LaplacePosterior",
    "curvature",
    "fit",
    "gridsearch",
    "marglik",
]
