"""Gradient estimators for layers of the form y = linear(x, kernel) + bias, and for recurrent layers.

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

A recurrent layer (`tfp_uq.layers._recurrent`) applies its matrices at every
time step with one draw per sequence; its mixins (`RecurrentReparameterization`,
`RecurrentFlipout`) give it, through `_sequence_matrices`, each matrix as the
map x -> x @ W_n + b_n that example n uses for the whole sequence. Local
reparameterization has no recurrent form: its noise is drawn per
pre-activation, so it would be drawn anew at every step.
"""

from keras import ops

from tfp_uq import _random

__all__ = [
    "Flipout",
    "FlippedMatrix",
    "LocalReparameterization",
    "PerSampleMatrix",
    "RecurrentFlipout",
    "RecurrentReparameterization",
    "Reparameterization",
    "SharedMatrix",
    "computed_once",
    "flip_signs",
]


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


def flip_signs(layer, shape, seed, name, side, training=None):
    """Flipout's random signs of `layer`'s weight `name` for a tensor of `shape` on `side` ("input" or "output").

    Each weight has its own pair of sub-streams, so the signs of the maps of
    one layer (a separable convolution's two, a recurrent layer's kernel and
    recurrent kernel) are independent.
    """
    purpose = _random.Stream.FLIP_INPUT if side == "input" else _random.Stream.FLIP_OUTPUT
    return _random.rademacher(
        layer._flip_shape(shape, side),
        _random.substream(seed, layer.weight_stream(name, purpose)),
        layer.compute_dtype,
        training,
    )


class Reparameterization:
    """Estimator mixin: one weight draw per call, shared across the batch."""

    def _sample_outputs(self, inputs, seed, training=None):
        samples, kl = self.draw_posteriors(seed, output="sample", training=training)
        bias = computed_once(samples["bias"]) if "bias" in samples else self._point_bias()
        return self._outputs(inputs, samples, bias), kl


class Flipout:
    """Estimator mixin: one shared perturbation, signs flipped per example.

    A chain of maps (`kernel_names`) flips each map with its own signs: each
    example then sees one pseudo-independent draw of every kernel.
    """

    def _sample_outputs(self, inputs, seed, training=None):
        perturbations, kl = self.draw_posteriors(seed, output="perturbation", training=training)
        outputs = inputs
        for index, name in enumerate(self.kernel_names):
            sign_in = flip_signs(self, ops.shape(outputs), seed, name, "input", training)
            perturbation = self._linear(outputs * sign_in, self._cast(perturbations[name]), name)
            sign_out = flip_signs(self, ops.shape(perturbation), seed, name, "output", training)
            perturbation = perturbation * sign_out
            outputs = self._linear(outputs, self._cast(self.posterior_loc(name)), name)
            if index == len(self.kernel_names) - 1:
                bias = self._mean_bias()
                if bias is not None:
                    outputs = self._add_bias(outputs, self._cast(bias))
                if "bias" in perturbations:
                    # Flipped at the signs' shape (one value per example and
                    # channel) before broadcasting: its gradient then sums over
                    # pixels first, where a sum of the full-size product took
                    # 30 ms of a 160 ms Conv2D step under XLA on CPU.
                    bias = self._broadcastable_bias(computed_once(self._cast(perturbations["bias"])))
                    perturbation = perturbation + sign_out * bias
            outputs = outputs + perturbation
        return _after_kl(outputs, kl), kl


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


# ------------------------------------------------------- weights held for a call
# A recurrent layer applies its weight matrices at every time step of a
# sequence, with one draw for the whole sequence. The estimators below give
# it, for one call, each matrix as a function x -> x @ W_n + b_n (W_n the
# weights example n sees), which its step function applies.


def _columns(value, start, stop, axis=-1):
    if start is None and stop is None:
        return value
    index = [slice(None)] * len(value.shape)
    index[axis] = slice(start, stop)
    return value[tuple(index)]


class SharedMatrix:
    """x -> x @ W + b with one W (and b) for the whole batch: a draw, or the posterior mean."""

    def __init__(self, kernel, bias=None):
        self.kernel, self.bias = kernel, bias

    def __call__(self, inputs, start=None, stop=None):
        """inputs @ W[:, start:stop] + b[start:stop]."""
        outputs = ops.matmul(inputs, _columns(self.kernel, start, stop))
        return outputs if self.bias is None else outputs + _columns(self.bias, start, stop)


class FlippedMatrix:
    """x_n -> x_n @ loc + b + ((x_n * s_n) @ dW + db) * r_n: Flipout's per-example weights, fixed for a call."""

    def __init__(self, loc, bias, perturbation, bias_perturbation, sign_in, sign_out):
        self.loc, self.bias = loc, bias
        self.perturbation, self.bias_perturbation = perturbation, bias_perturbation
        self.sign_in, self.sign_out = sign_in, sign_out  # (batch, inputs), (batch, outputs)

    def __call__(self, inputs, start=None, stop=None):
        sign_in, sign_out = self.sign_in, _columns(self.sign_out, start, stop)
        if len(inputs.shape) == 3:  # a whole sequence: the signs hold along time
            sign_in, sign_out = sign_in[:, None, :], sign_out[:, None, :]
        perturbation = ops.matmul(inputs * sign_in, _columns(self.perturbation, start, stop))
        if self.bias_perturbation is not None:
            perturbation = perturbation + _columns(self.bias_perturbation, start, stop)
        outputs = ops.matmul(inputs, _columns(self.loc, start, stop)) + perturbation * sign_out
        return outputs if self.bias is None else outputs + _columns(self.bias, start, stop)


class PerSampleMatrix:
    """x -> x @ W[s] + b[s] on block s of a batch tiled `num_samples` times (vectorised prediction)."""

    def __init__(self, kernels, biases, num_samples):
        self.kernels, self.biases, self.num_samples = kernels, biases, num_samples

    def __call__(self, inputs, start=None, stop=None):
        shape = ops.shape(inputs)
        blocks = ops.reshape(inputs, (self.num_samples, -1, shape[-1]))
        outputs = ops.matmul(blocks, _columns(self.kernels, start, stop))
        if self.biases is not None:
            outputs = outputs + _columns(self.biases, start, stop)[:, None, :]
        return ops.reshape(outputs, tuple(shape[:-1]) + (outputs.shape[-1],))


class RecurrentReparameterization:
    """Estimator mixin of recurrent layers: one draw of every weight per sequence, shared by the batch."""

    def _sequence_matrices(self, batch_size, seed, training=None):
        samples, kl = self.draw_posteriors(seed, output="sample", training=training)
        biases = self._split_bias(self._cast_bias(samples["bias"] if "bias" in samples else self._point_bias()))
        matrices = {
            name: SharedMatrix(self._cast(samples[name]), biases[index]) for index, name in enumerate(self.matrix_names)
        }
        return matrices, kl


class RecurrentFlipout:
    """Estimator mixin of recurrent layers: one perturbation per sequence, signs flipped per example.

    Example n uses W_n = loc + dW * (s_n r_n^T) at every time step: its
    signs are drawn once per sequence, so each example's weights hold along
    the sequence, as one draw per sequence requires.
    """

    def _sequence_matrices(self, batch_size, seed, training=None):
        perturbations, kl = self.draw_posteriors(seed, output="perturbation", training=training)
        biases = self._split_bias(self._cast_bias(self._mean_bias()))
        bias_perturbations = self._split_bias(self._cast_bias(perturbations.get("bias")))
        matrices = {}
        for index, name in enumerate(self.matrix_names):
            loc = self._cast(self.posterior_loc(name))
            fan_in, fan_out = loc.shape
            matrices[name] = FlippedMatrix(
                loc,
                biases[index],
                self._cast(perturbations[name]),
                bias_perturbations[index],
                flip_signs(self, (batch_size, fan_in), seed, name, "input", training),
                flip_signs(self, (batch_size, fan_out), seed, name, "output", training),
            )
        return matrices, kl
