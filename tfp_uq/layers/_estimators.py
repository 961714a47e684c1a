"""Gradient estimators for layers of the form y = linear(x, kernel) + bias.

An estimator mixin adds only its sampling rule, `_sample_outputs(inputs,
seed, training)`, to a `tfp_uq.layers._linear.BayesianLinear` layer:

- Reparameterization (Kingma & Welling 2014; Blundell et al. 2015): one
  kernel draw W = loc + scale * eps per call, shared by the batch.
- Flipout (Wen et al. 2018): one perturbation dW = scale * eps per call,
  decorrelated across examples by random signs,
  y_n = linear(x_n, loc) + (linear(x_n * s_n, dW) + db) * r_n.
- Local reparameterization (Kingma, Salimans & Welling 2015): samples the
  pre-activations, independent per example:
  y = linear(x, loc) + b + sqrt(linear(x^2, scale^2) + scale_b^2) * eps.
"""

from keras import ops

from tfp_uq import _random

__all__ = ["Flipout", "LocalReparameterization", "Reparameterization", "computed_once"]


def computed_once(value):
    """`value`, exactly; under XLA computed once rather than per consumer element.

    XLA on CPU fuses cheap elementwise producers into their consumers. A small
    drawn tensor added to a large output (a bias sample: random bits, an inverse
    normal CDF, softplus, ~70 operations per element) was thereby recomputed
    for every output element: for a Conv2D bias once per pixel (~20 ms of a
    160 ms step of the CNN in benchmarks/layers_speed.py). XLA does not fuse a
    reduction into its consumers, so `value` is summed with zeros over a new
    axis of size 2 (exact). An XLA optimization barrier does not help: the
    CPU compiler removes it before fusion.
    """
    return ops.sum(ops.stack([value, ops.zeros_like(value)], axis=-1), axis=-1)


def _after_kl(outputs, kl):
    """`outputs`, exactly, made to depend on `kl` through an added zero.

    Under XLA the KL's reads of the posterior variables then come before the
    loss, hence before the gradients and the optimizer's in-place updates of
    those variables; without this order XLA copies each posterior's mean and
    scale variables at the start of every compiled training step. Estimators
    whose outputs also read the posterior mean directly (Flipout, local
    reparameterization) use it: their MLP training step under XLA got 5-10%
    faster. For reparameterization, whose only reader of the mean is the
    weight draw, it measured 5% slower, so that estimator does not. The zero
    is `0 * isnan(kl)`: a non-finite KL does not reach the outputs.
    """
    zero = ops.cast(ops.isnan(kl), outputs.dtype) * 0.0
    return outputs + zero


class Reparameterization:
    """Estimator mixin: one weight draw per call, shared across the batch."""

    def _sample_outputs(self, inputs, seed, training=None):
        samples, kl = self.draw_posteriors(seed, output="sample", training=training)
        bias = computed_once(samples["bias"]) if "bias" in samples else self._point_bias()
        return self._outputs(inputs, samples["kernel"], bias), kl


class Flipout:
    """Estimator mixin: one shared perturbation, signs flipped per example."""

    def _sample_outputs(self, inputs, seed, training=None):
        perturbations, kl = self.draw_posteriors(seed, output="perturbation", training=training)
        sign_in = _random.rademacher(
            self._flip_shape(ops.shape(inputs)),
            _random.substream(seed, _random.stream(_random.Stream.FLIP_INPUT)),
            self.compute_dtype,
            training,
        )
        perturbation = self._outputs(inputs * sign_in, perturbations["kernel"], None)
        sign_out = _random.rademacher(
            self._flip_shape(ops.shape(perturbation)),
            _random.substream(seed, _random.stream(_random.Stream.FLIP_OUTPUT)),
            self.compute_dtype,
            training,
        )
        perturbation = perturbation * sign_out
        if "bias" in perturbations:
            # Flipped at the signs' shape (one value per example and channel)
            # before broadcasting: its gradient then sums over pixels first,
            # where a sum of the full-size product took 30 ms of a 160 ms
            # Conv2D step under XLA on CPU.
            bias = self._broadcastable_bias(computed_once(self._cast(perturbations["bias"])))
            perturbation = perturbation + sign_out * bias
        return _after_kl(self._mean_outputs(inputs) + perturbation, kl), kl


class LocalReparameterization:
    """Estimator mixin: pre-activations sampled independently per example."""

    independent_per_example = True

    def _sample_outputs(self, inputs, seed, training=None):
        scales, kl = self.draw_posteriors(seed, output="scale", training=training)
        mean = self._mean_outputs(inputs)
        # The variance is computed in float32: squares underflow in float16.
        scale = scales["kernel"]
        variance = self._linear(ops.square(ops.cast(inputs, scale.dtype)), ops.square(scale))
        if "bias" in scales:
            variance = self._add_bias(variance, computed_once(ops.square(scales["bias"])))
        noise = _random.normal(
            ops.shape(variance),
            _random.substream(seed, _random.stream(_random.Stream.LOCAL_NOISE)),
            variance.dtype,
            training,
        )
        # The tiny constant keeps the gradient of sqrt finite for all-zero inputs.
        return _after_kl(mean + self._cast(ops.sqrt(variance + 1e-12) * noise), kl), kl
