"""How a Bayesian layer's raw scale variable maps to the posterior standard deviation.

Two parameterisations, chosen by the layer's `posterior_scale_init`:

- Curvature (`posterior_scale_init=None`, the default). The posterior precision of
  weight w_ij is the prior's plus N times a curvature that factors into the mean
  square e_i of the weight's input and a learned, input-free part lambda_ij:

      1 / scale_ij^2 = 1 / prior_variance + e_i * lambda_ij / kl_weight,
      lambda_ij = exp(raw_ij),  kl_weight = 1 / N.

  This is the form of the mean-field optimum 1 / (N h + 1 / prior_variance) of a
  quadratic model with curvature h_ij = e_i lambda_ij (as in a Kronecker-factored
  curvature: input second moment times output-side curvature, Martens & Grosse
  2015). e_i is a running mean of x_i^2 over training batches, kept like Keras'
  BatchNormalization moving statistics. So what would otherwise take the
  optimizer many steps comes from the data at once: a weight whose input is
  always zero has its prior as posterior, the scale follows 1 / sqrt(N) as the
  data grow, and the learned part does not depend on the scale of the inputs.
  lambda starts at `INITIAL_CURVATURE`: the posterior starts tight and widens
  while the means fit the data, the order in which the ELBO is climbed without
  the noise of wide posteriors swamping the means (a wide start, lambda = 1,
  measured: UCI energy split 0 test LL -1.65 against -0.46; benchmarks/RESULTS.md).
- Softplus (`posterior_scale_init` a number, as in files saved before the curvature
  parameterisation, and `bayesianize`'s MOPED start): scale = softplus(raw) + floor,
  raw starting at softplus^-1(posterior_scale_init).

Adam moves a raw value by about its learning rate per step whatever the gradient's
size, so with softplus a scale that starts at 1e-3 moves by a factor e^(lr * steps)
at most: 1.8x in the README quickstart (570 steps at 1e-3), wherever its optimum is.

Example:

>>> scale = curvature_scale(raw, energy=ops.ones((64, 1)), kl_weight=1 / 1000, prior_variance=1.0)
"""

import math

import keras
from keras import ops

from tfp_uq import priors

__all__ = [
    "INITIAL_CURVATURE",
    "ENERGY_MOMENTUM",
    "uses_curvature",
    "initial_raw",
    "curvature_scale",
    "softplus_scale",
    "raw_for_curvature_scale",
    "update_energy",
    "add_energy_variables",
]

# lambda at the start: 100 times the curvature of a unit-noise Gaussian likelihood,
# so a weight on a unit-energy input starts at 0.1 / sqrt(N) (1e-3 for N = 10,000,
# the softplus default's start).
INITIAL_CURVATURE = 100.0
# Running mean of the inputs' squares: the first batches are averaged exactly, later
# ones with this momentum (BatchNormalization's default).
ENERGY_MOMENTUM = 0.99
# kl_weight 0 (the start of a KL annealing schedule) means no KL: scales go to the floor.
_MIN_KL_WEIGHT = 1e-12


def uses_curvature(posterior_scale_init):
    """Whether a layer with this `posterior_scale_init` uses the curvature parameterisation."""
    return posterior_scale_init is None


def initial_raw(posterior_scale_init):
    """The raw scale variable's initial value (a float) for `posterior_scale_init`."""
    if uses_curvature(posterior_scale_init):
        return math.log(INITIAL_CURVATURE)
    return float(priors.softplus_inverse(posterior_scale_init - priors.SCALE_FLOOR))


def softplus_scale(raw):
    """scale = softplus(raw) + floor."""
    return priors.positive_scale(raw)


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
    kl_weight = ops.maximum(ops.cast(kl_weight, raw.dtype), _MIN_KL_WEIGHT)
    precision = energy * ops.exp(raw) / kl_weight + 1.0 / prior_variance
    return ops.rsqrt(precision) + priors.SCALE_FLOOR


def raw_for_curvature_scale(scale, energy, kl_weight, prior_variance):
    """The raw value whose `curvature_scale` is `scale` (NumPy), capped at the prior's scale."""
    import numpy as np

    scale = np.maximum(np.asarray(scale, "float64") - priors.SCALE_FLOOR, 1e-30)
    data_precision = np.maximum(1.0 / scale**2 - 1.0 / np.asarray(prior_variance), 1e-30)
    return np.log(data_precision * max(float(kl_weight), _MIN_KL_WEIGHT) / np.maximum(energy, 1e-30))


def update_energy(energy, count, inputs, channel_axis):
    """Updates the running mean square per channel of `inputs` (variables `energy`, `count`).

    The first 1 / (1 - ENERGY_MOMENTUM) batches are averaged with equal weights,
    later ones exponentially, so the first batch replaces the initial value.
    """
    axes = tuple(a for a in range(len(inputs.shape)) if a != channel_axis % len(inputs.shape))
    batch_energy = ops.mean(ops.square(ops.cast(inputs, energy.dtype)), axis=axes)
    count_value = ops.convert_to_tensor(count) + 1.0
    rate = ops.maximum(1.0 / count_value, 1.0 - ENERGY_MOMENTUM)
    energy.assign(energy + rate * (batch_energy - energy))
    count.assign(count_value)


def add_energy_variables(layer, channels):
    """Creates `layer.input_energy` (per input channel) and its batch count, both non-trainable."""
    layer.input_energy = layer.add_weight(
        name="input_energy", shape=(channels,), initializer=keras.initializers.Ones(), trainable=False
    )
    layer.input_energy_count = layer.add_weight(
        name="input_energy_count", shape=(), initializer=keras.initializers.Zeros(), trainable=False
    )
