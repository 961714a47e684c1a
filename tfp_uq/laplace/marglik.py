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
gradients from TensorFlow (float64).
"""

import numpy as np
import scipy.optimize
import tensorflow as tf

PRIOR_STRUCTURES = ("scalar", "layerwise", "diag")
# log prior precisions and log noise precisions are searched within +-this bound.
_LOG_BOUND = 25.0


def expand_prior(structure, values, shapes):
    """Per block, the prior precision broadcastable to the block's `(rows, columns)`, from the flat `values`.

    `values`: 1 value ("scalar"), one per block ("layerwise") or one per
    parameter in block order ("diag"); a tensor or array.
    """
    if structure == "scalar":
        return [values[0]] * len(shapes)
    if structure == "layerwise":
        return [values[index] for index in range(len(shapes))]
    sizes = [rows * columns for rows, columns in shapes]
    return [tf.reshape(part, shape) for part, shape in zip(tf.split(values, sizes), shapes)]


def num_prior_values(structure, shapes):
    """How many prior precisions a structure has for blocks of `shapes`."""
    return {"scalar": 1, "layerwise": len(shapes), "diag": sum(r * c for r, c in shapes)}[structure]


def log_marginal_likelihood(
    structure, likelihood, statistics, mean_blocks, prior_structure, prior_values, noise_precision
):
    """The Laplace log marginal likelihood (a float64 tensor, differentiable in the prior and the noise).

    Args:
        structure: a fitted `_structures.Structure`.
        likelihood: the `_likelihoods.Likelihood`.
        statistics: dict with the summed likelihood "statistic", the example "count" and "num_targets".
        mean_blocks: theta* per block, `(rows, columns)` float64 arrays.
        prior_structure: one of `PRIOR_STRUCTURES`.
        prior_values: float64 tensor of the prior precisions (see `expand_prior`).
        noise_precision: float64 scalar tensor h (1 without a noise hyperparameter).
    """
    prior = expand_prior(prior_structure, prior_values, structure.shapes)
    log_likelihood = likelihood.log_likelihood(
        tf.constant(statistics["statistic"], tf.float64), noise_precision, statistics["num_targets"]
    )
    scatter, log_det_prior = 0.0, 0.0
    for theta, p, shape in zip(mean_blocks, prior, structure.shapes):
        p = tf.broadcast_to(tf.cast(p, tf.float64), shape)
        scatter += tf.reduce_sum(p * tf.square(tf.constant(theta)))
        log_det_prior += tf.reduce_sum(tf.math.log(p))
    log_det = structure.log_det(noise_precision, prior, scalar=prior_structure == "scalar")
    return log_likelihood - 0.5 * (scatter + log_det - log_det_prior)


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
        prior = tf.exp(parameters[:count]) if learn_prior else tf.constant(prior_values, tf.float64)
        noise = tf.exp(parameters[-1]) if learn_noise else tf.constant(noise_precision, tf.float64)
        return prior, noise

    @tf.function(autograph=False)
    def value_and_gradient(parameters):
        with tf.GradientTape() as tape:
            tape.watch(parameters)
            value = -log_marginal_likelihood(
                structure, likelihood, statistics, mean_blocks, prior_structure, *unpack(parameters)
            )
        return value, tape.gradient(value, parameters)

    # A concrete function: each fit traces its own, which TensorFlow's retracing warning would count.
    compiled = value_and_gradient.get_concrete_function(tf.TensorSpec(start.shape, tf.float64))

    def objective(parameters):
        value, gradient = compiled(tf.constant(parameters, tf.float64))
        return float(value), gradient.numpy()

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


__all__ = ["PRIOR_STRUCTURES", "log_marginal_likelihood", "optimize"]
