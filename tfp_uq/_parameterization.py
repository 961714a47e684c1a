"""How a positive scale is stored: an unconstrained raw value and its map to the scale.

Softplus. A hierarchical prior's learned scale, a `GaussianHead`'s noise scale
and the posterior scales of a Bayesian layer built with a number for
`posterior_scale_init` (files saved before the curvature parameterisation,
`bayesianize`'s MOPED start) are `softplus(raw) + SCALE_FLOOR`: smooth,
positive, never below the floor, and linear in `raw` for large scales.
`raw_scale` inverts it for initialisers. Adam moves a raw value by about its
learning rate per step whatever the gradient's size, so a scale that starts at
1e-3 moves by a factor e^(lr * steps) at most: 1.8x in the README quickstart
(570 steps at 1e-3), wherever its optimum is.

Curvature (`posterior_scale_init=None`, the layers' default). The posterior
precision of weight w_ij is the prior's plus N times a curvature that factors
into the mean square e_i of the weight's input and a learned, input-free part
lambda_ij:

    1 / scale_ij^2 = 1 / prior_variance + e_i * lambda_ij / kl_weight,
    lambda_ij = exp(raw_ij),  kl_weight = 1 / N.

This is the form of the mean-field optimum 1 / (N h + 1 / prior_variance) of a
quadratic model with curvature h_ij = e_i lambda_ij (as in a Kronecker-factored
curvature: input second moment times output-side curvature, Martens & Grosse
2015). The layer keeps e_i as a running mean of x_i^2 over training batches
(`tfp_uq.layers._linear.BayesianLinear`). So what would otherwise take the
optimizer many steps comes from the data at once: a weight whose input is
always zero has its prior as posterior, the scale follows 1 / sqrt(N) as the
data grow, and the learned part does not depend on the scale of the inputs.
lambda starts at `INITIAL_CURVATURE`: the posterior starts tight and widens
while the means fit the data, the order in which the ELBO is climbed without
the noise of wide posteriors swamping the means.

Example:

>>> scale = curvature_scale(raw, energy=ops.ones((64, 1)), kl_weight=1 / 1000, prior_variance=1.0)
"""

import math

import numpy as np
from keras import ops

__all__ = [
    "INITIAL_CURVATURE",
    "MIN_KL_WEIGHT",
    "SCALE_FLOOR",
    "curvature_scale",
    "initial_curvature_raw",
    "positive_scale",
    "raw_scale",
    "softplus_inverse",
]

# Positive scales are softplus(raw) + SCALE_FLOOR, so they never reach zero.
SCALE_FLOOR = 1e-6
# lambda at the start: 100 times the curvature of a unit-noise Gaussian likelihood,
# so a weight on a unit-energy input starts at 0.1 / sqrt(N) (1e-3 for N = 10,000,
# the softplus default's start).
INITIAL_CURVATURE = 100.0
# kl_weight 0 (the start of a KL annealing schedule) means no KL: scales go to the floor.
MIN_KL_WEIGHT = 1e-12


def softplus_inverse(value):
    """Returns `raw` with `softplus(raw) == value` (a NumPy float or array)."""
    value = np.asarray(value, dtype="float64")
    return value + np.log(-np.expm1(-value))


def positive_scale(raw):
    """Maps an unconstrained tensor to a positive scale: softplus with a floor."""
    return ops.softplus(raw) + SCALE_FLOOR


def raw_scale(scale):
    """The raw value whose `positive_scale` is `scale` (> SCALE_FLOOR), as NumPy float64."""
    return softplus_inverse(np.asarray(scale, dtype="float64") - SCALE_FLOOR)


def initial_curvature_raw():
    """The raw value of the curvature parameterisation at the start: log(INITIAL_CURVATURE)."""
    return math.log(INITIAL_CURVATURE)


def curvature_scale(raw, energy, kl_weight, prior_variance):
    """scale = (1 / prior_variance + energy * exp(raw) / kl_weight)^(-1/2) + floor.

    Args:
        raw: the raw scale variable (log lambda), any shape.
        energy: the inputs' mean squares, broadcastable against `raw` (1 for a bias).
        kl_weight: the layer's KL weight 1 / N (scalar).
        prior_variance: the prior's variance, broadcastable against `raw`.

    Returns:
        The posterior standard deviations, shaped like `raw`.
    """
    kl_weight = ops.maximum(ops.cast(kl_weight, raw.dtype), MIN_KL_WEIGHT)
    energy, prior_variance = ops.cast(energy, raw.dtype), ops.cast(prior_variance, raw.dtype)
    precision = energy * ops.exp(raw) / kl_weight + 1.0 / prior_variance
    return ops.rsqrt(precision) + SCALE_FLOOR
