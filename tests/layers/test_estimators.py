"""Helpers shared by the estimators (`tfp_uq.layers._estimators`)."""

import numpy as np
import tensorflow as tf

from tfp_uq.layers._estimators import _computed_once


def test_computed_once_is_the_identity_with_identity_gradient_eager_and_under_xla():
    value = tf.constant(np.random.default_rng(0).normal(size=(3, 5)).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=(3, 5)).astype("float32"))

    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = _computed_once(x)
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, x)

    for fn in (value_and_gradient, tf.function(value_and_gradient, jit_compile=True)):
        out, gradient = fn(value)
        np.testing.assert_array_equal(out.numpy(), value.numpy())
        np.testing.assert_array_equal(gradient.numpy(), weights.numpy())
