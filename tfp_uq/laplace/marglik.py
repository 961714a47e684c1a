"""The Laplace approximation to the log marginal likelihood, and its maximisation.

With a Gaussian prior N(0, diag(lambda)^-1) on the covered weights, the
weights theta* the network was trained to and the posterior precision
`P = h GGN + diag(lambda)` (h: the noise precision for regression with an
unknown noise, else 1), MacKay (1992) / Immer et al. (2021):

    log p(D) ~ log p(D | theta*) + log p(theta*) + P/2 log(2 pi) - 1/2 log det P
             = log p(D | theta*) - 1/2 (sum_p lambda_p theta*_p^2 + log det P - sum_p log lambda_p)

exact for a linear model with Gaussian noise when theta* is the MAP. The
prior precision is one scalar ("scalar"), one per layer ("layerwise") or one
per weight ("diag", not with "kron"); `optimize` maximises the expression in
their logarithms and, when the noise is unknown, in log h, by L-BFGS with
closed-form gradients (NumPy float64: no graph to trace, and each step
costs only elementwise work on the precision's eigenvalues, except for a
full GGN under a prior that is not one scalar, which takes a Cholesky
factorisation).
"""

import numpy as np
import scipy.optimize

PRIOR_STRUCTURES = ("scalar", "layerwise", "diag")
# log prior precisions and log noise precisions are searched within +-this bound.
_LOG_BOUND = 25.0


def expand_prior(structure, values, shapes):
    """Per block, the prior precision broadcastable to the block's `(rows, columns)`, from the flat `values`.

    `values`: 1 value ("scalar"), one per block ("layerwise") or one per
    parameter in block order ("diag").
    """
    values = np.asarray(values, "float64")
    if structure == "scalar":
        return [values[0]] * len(shapes)
    if structure == "layerwise":
        return [values[index] for index in range(len(shapes))]
    sizes = [rows * columns for rows, columns in shapes]
    return [part.reshape(shape) for part, shape in zip(np.split(values, np.cumsum(sizes)[:-1]), shapes)]


def _collect_prior(structure, gradients):
    """The gradient in the flat prior values from the elementwise gradients per block (`expand_prior`'s adjoint)."""
    sums = np.array([np.sum(gradient) for gradient in gradients])
    if structure == "scalar":
        return np.array([sums.sum()])
    if structure == "layerwise":
        return sums
    return np.concatenate([gradient.reshape(-1) for gradient in gradients])


def num_prior_values(structure, shapes):
    """How many prior precisions a structure has for blocks of `shapes`."""
    return {"scalar": 1, "layerwise": len(shapes), "diag": sum(r * c for r, c in shapes)}[structure]


def value_and_gradients(structure, likelihood, statistics, mean_blocks, prior_structure, prior_values, noise_precision):
    """The Laplace log marginal likelihood and its gradients in the prior values and the noise precision.

    Args:
        structure: a fitted `_structures.Structure`.
        likelihood: the `_likelihoods.Likelihood`.
        statistics: dict with the summed likelihood "statistic", the example "count" and "num_targets".
        mean_blocks: theta* per block, `(rows, columns)` float64 arrays.
        prior_structure: one of `PRIOR_STRUCTURES`.
        prior_values: the flat prior precisions (see `expand_prior`).
        noise_precision: h (1 without a noise hyperparameter).

    Returns:
        `(value, gradient in prior_values, gradient in noise_precision)`, NumPy float64.
    """
    prior = expand_prior(prior_structure, prior_values, structure.shapes)
    log_likelihood, likelihood_gradient = likelihood.log_likelihood(
        statistics["statistic"], noise_precision, statistics["num_targets"]
    )
    log_det, log_det_gradient_h, log_det_gradients = structure.log_det(noise_precision, prior)
    value, prior_gradients = log_likelihood - 0.5 * log_det, []
    for theta, p, log_det_gradient in zip(mean_blocks, prior, log_det_gradients):
        p = np.broadcast_to(p, theta.shape)
        value -= 0.5 * (np.sum(p * np.square(theta)) - np.sum(np.log(p)))
        prior_gradients.append(-0.5 * (np.square(theta) + log_det_gradient - 1.0 / p))
    gradient_h = likelihood_gradient - 0.5 * log_det_gradient_h
    return float(value), _collect_prior(prior_structure, prior_gradients), float(gradient_h)


def log_marginal_likelihood(
    structure, likelihood, statistics, mean_blocks, prior_structure, prior_values, noise_precision
):
    """The Laplace log marginal likelihood (a float); arguments as for `value_and_gradients`."""
    return value_and_gradients(
        structure, likelihood, statistics, mean_blocks, prior_structure, prior_values, noise_precision
    )[0]


def optimize(
    structure,
    likelihood,
    statistics,
    mean_blocks,
    prior_structure,
    prior_values=None,
    noise_precision=None,
    learn_prior=True,
    learn_noise=False,
):
    """Maximises `log_marginal_likelihood` in the prior precision and/or the noise precision.

    Args:
        prior_values: the initial (or, with `learn_prior=False`, fixed) prior precisions; default all 1.
        noise_precision: the initial (or fixed) noise precision; default 1.
        learn_prior, learn_noise: which of the two to optimise.

    Returns:
        `(prior_values, noise_precision)` as a float64 array and a float.
    """
    count = num_prior_values(prior_structure, structure.shapes)
    prior_values = (
        np.ones(count) if prior_values is None else np.broadcast_to(np.asarray(prior_values, "float64"), (count,))
    )
    noise_precision = 1.0 if noise_precision is None else float(noise_precision)
    start = np.concatenate(
        [np.log(prior_values) if learn_prior else [], [np.log(noise_precision)] if learn_noise else []]
    )
    if not len(start):
        return np.array(prior_values, dtype="float64"), noise_precision

    def unpack(parameters):
        prior = np.exp(parameters[:count]) if learn_prior else prior_values
        noise = float(np.exp(parameters[-1])) if learn_noise else noise_precision
        return prior, noise

    def objective(parameters):
        prior, noise = unpack(parameters)
        value, gradient_prior, gradient_noise = value_and_gradients(
            structure, likelihood, statistics, mean_blocks, prior_structure, prior, noise
        )
        # In the logarithms: d/d log v = v d/dv.
        gradient = np.concatenate(
            [prior * gradient_prior if learn_prior else [], [noise * gradient_noise] if learn_noise else []]
        )
        return -value, -gradient

    result = scipy.optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
        options={"maxiter": 500, "ftol": 1e-14, "gtol": 1e-9},
    )
    prior, noise = unpack(result.x)
    return np.asarray(prior, dtype="float64"), float(noise)


__all__ = ["PRIOR_STRUCTURES", "log_marginal_likelihood", "optimize", "value_and_gradients"]
