"""The prior precision that minimises the GLM predictive's negative log-likelihood on held-out data.

The marginal likelihood scores the prior against the training data alone. A
network trained to near-zero loss has a GGN near zero (a softmax's
curvature `p (1 - p)` vanishes on examples it fits with certainty), and the
evidence then prefers a prior that leaves the weights almost as uncertain as
the prior itself: on the digits MLP of `benchmarks/laplace.py` (no weight
decay) the evidence picks lambda = 1.7 and the test NLL is 0.44, against
0.069 at lambda = 100. laplace-torch 0.3 picks the same on the same weights
(lambda = 1.72, NLL 0.437; `benchmarks/laplace_reference.py`): it is the
method, not this implementation. Daxberger et al. (2021) offer this search
for that case: a log-spaced grid of scalar prior precisions, each scored by
the predictive's NLL on validation data (probit for classification,
Gaussian for regression). It needs validation data with errors to score:
the digits validation split (170 images, one error) scores best at the
grid's top, 1e4, where the posterior is all but the plain model.
"""

import numpy as np
import tensorflow as tf

from tfp_uq.laplace import _data, _function, _predictive

#: The default grid: 81 prior precisions, 10 per decade from 1e-4 to 1e4.
GRID = np.logspace(-4, 4, 81)


def validation_nll(function, structure, likelihood, batches, noise_precision, priors, jit_compile):
    """Summed validation NLL of the GLM predictive at each scalar prior precision in `priors`.

    The Jacobians do not depend on the prior, so one compiled function takes
    the covariance factors as arguments and serves the whole grid.
    """

    @tf.function(jit_compile=jit_compile, autograph=False)
    def score(inputs, targets, weights, arrays):
        f, mean, variance, _ = _predictive.moments(function, structure, likelihood, arrays, inputs)
        summary = _predictive.fields(likelihood, f, mean, variance, noise_precision)
        return _predictive.negative_log_likelihood(likelihood, summary, targets, weights)

    parts = [batch for _, batch in _data.fixed_size(batches)]
    totals = []
    for prior in priors:
        arrays = structure.posterior_arrays(noise_precision, [prior] * len(structure.shapes))
        arrays = {key: tf.constant(value) for key, value in arrays.items()}
        totals.append(sum(float(_function.run_compiled(score, *part, arrays)) for part in parts))
    return np.array(totals)


def search(function, structure, likelihood, batches, noise_precision, grid=GRID, jit_compile=False):
    """The prior precision of `grid` with the least validation NLL."""
    scores = validation_nll(function, structure, likelihood, batches, noise_precision, grid, jit_compile)
    return float(grid[int(np.argmin(scores))])


__all__ = ["GRID", "search", "validation_nll"]
