"""Helpers shared by the estimators (`tfp_uq.layers._estimators`)."""

import keras
import numpy as np
import tensorflow as tf

from tfp_uq.layers._estimators import _after_kl
from tfp_uq.layers._estimators import computed_once as _computed_once


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


def test_outputs_are_exactly_unchanged_by_their_kl_anchor():
    # The zero that orders the KL before the loss under XLA must add nothing,
    # even when the KL is not finite.
    values = np.array([[1.5, -0.0, 3e-38], [-2.0, 1e30, 7.0]], "float32")
    for kl in (0.25, float("inf"), float("nan")):
        outputs = _after_kl(keras.ops.convert_to_tensor(values), keras.ops.convert_to_tensor(kl))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs), values)
