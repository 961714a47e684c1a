"""Monte Carlo moments of one Bayesian layer's outputs, against their closed forms (shared by the layer tests)."""

import numpy as np
import tensorflow as tf


def randomise(layer, rng, spread=0.2):
    """Moves every trainable weight of a built layer by N(0, spread^2), so means and scales differ per weight."""
    for variable in layer.trainable_weights:
        variable.assign(variable + rng.normal(0.0, spread, variable.shape).astype("float32"))


def monte_carlo_moments(layer, x, calls=800, copies=16):
    """Mean and variance over `calls` calls of `layer` on `copies` copies of `x` (one example)."""
    tiled = tf.constant(np.repeat(x, copies, axis=0))

    @tf.function
    def moments():
        y = layer(tiled)
        total, total_sq = tf.zeros_like(y), tf.zeros_like(y)
        for _ in tf.range(calls):
            y = layer(tiled)
            total += y
            total_sq += y * y
        return tf.reduce_sum(total, 0), tf.reduce_sum(total_sq, 0)

    total, total_sq = (t.numpy() for t in moments())
    mean = total / (copies * calls)
    return mean, total_sq / (copies * calls) - mean**2


def assert_moments(layer, x, exact_mean, exact_var, calls=800, copies=16, rtol=0.2):
    """The layer's Monte Carlo mean is within 5 standard errors of `exact_mean`, its variance within `rtol`.

    With one weight draw per call (reparameterization) only `calls` draws
    are independent, hence the standard error from `calls`.
    """
    mean, var = monte_carlo_moments(layer, x, calls, copies)
    exact_mean, exact_var = np.asarray(exact_mean)[0], np.asarray(exact_var)[0]
    np.testing.assert_allclose(mean, exact_mean, atol=5 * np.sqrt(exact_var.max() / calls))
    np.testing.assert_allclose(var, exact_var, rtol=rtol)
