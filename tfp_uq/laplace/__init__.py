"""Post-hoc Laplace: uncertainty for a Keras model that is already trained, without retraining.

`fit` puts a Gaussian posterior around a trained model's weights (all of
them, its last layer, or named layers) from the curvature of its likelihood
over the training data; the `LaplacePosterior` it returns predicts with the
linearised network or Monte Carlo over weights; it is a
`tfp_uq.posterior.Posterior`, so `tfp_uq.predict`, `tfp_uq.export`,
`tfp_uq.conformal.calibrate` and `tfp_uq.posterior.save` / `load` take it.

Example:

>>> posterior = tfp_uq.laplace.fit(model, (x_train, y_train))   # last-layer KFAC, marginal-likelihood prior
>>> tfp_uq.predict(posterior, x_test).probs                        # probit probabilities
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
