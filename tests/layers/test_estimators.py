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


def test_a_traced_call_that_does_not_train_draws_as_the_eager_call_and_compiles_nothing_per_layer():
    # predict and evaluate draw op by op (each compiled function of a layer cost ~0.6 s to
    # compile): the same numbers as an eager call, and no compiled draw kept for the layer.
    from tfp_uq import _caches
    from tfp_uq.layers import DenseFlipout

    layer = DenseFlipout(5, seed=3)
    layer.build((None, 300))
    seed = tf.constant([5, 6], "int64")
    eager, eager_kl = layer.draw_posteriors(seed, "perturbation", training=False)
    traced = tf.function(lambda s: layer.draw_posteriors(s, "perturbation", training=False), autograph=False)
    graph, graph_kl = traced(seed)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(graph[name].numpy(), eager[name].numpy())
    assert float(graph_kl) == float(eager_kl) > 0.0
    assert "draw_posteriors" not in _caches._COMPILED.get(layer, {})
