"""Gradient estimators for layers of the form y = linear(x, kernel) + bias.

`BayesianLinear` holds what Dense and convolution layers share: a kernel and
an optional bias with posteriors, activation, and the call that asks an
estimator for outputs. An estimator mixin adds only its sampling rule,
`_sample_outputs(inputs, seed, training)`, and a layer class adds only its linear
operation (`_linear`), its bias broadcast (`_add_bias`) and shapes.

- Reparameterization (Kingma & Welling 2014; Blundell et al. 2015): one
  kernel draw W = loc + scale * eps per call, shared by the batch.
- Flipout (Wen et al. 2018): one perturbation dW = scale * eps per call,
  decorrelated across examples by random signs,
  y_n = linear(x_n, loc) + (linear(x_n * s_n, dW) + db) * r_n.
- Local reparameterization (Kingma, Salimans & Welling 2015): samples the
  pre-activations, independent per example:
  y = linear(x, loc) + b + sqrt(linear(x^2, scale^2) + scale_b^2) * eps.
"""

import keras
from keras import ops

from tfp_uq import _random, _sampling, _validation
from tfp_uq.layers import _posterior_scale
from tfp_uq.layers._base import BayesianLayer


def _computed_once(value):
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


# Options of keras.layers.Dense / ConvND that a Bayesian layer replaces, and with what.
REPLACED_OPTIONS = {
    "kernel_regularizer": "the prior's KL term regularises the weights: choose `prior=` instead",
    "bias_regularizer": "the prior's KL term regularises the weights: choose `prior=` instead",
    "kernel_constraint": "sampled weights would not satisfy a constraint on their mean",
    "bias_constraint": "sampled weights would not satisfy a constraint on their mean",
    "lora_rank": "use tfp_uq.layers.BayesianLoRA for a Bayesian low-rank update",
}


def _reject_replaced_options(layer, kwargs):
    for option, reason in REPLACED_OPTIONS.items():
        if kwargs.pop(option, None) is not None:
            raise ValueError(f"{type(layer).__name__} does not take {option}: {reason}")


class BayesianLinear(BayesianLayer):
    """Base of Bayesian layers computing activation(linear(x, kernel) + bias).

    Args:
        activation: activation function, as in Keras layers.
        use_bias: whether the layer has a bias.
        kernel_initializer: initializer of the kernel's posterior mean.
        bias_initializer: initializer of the bias's posterior mean.
        bayesian_bias: if True the bias has a posterior and a prior like the
            kernel; if False it is an ordinary (point-estimate) weight.
        **kwargs: `BayesianLayer` arguments (prior, posterior_scale_init,
            kl_weight, seed, deterministic) and base layer arguments.
    """

    def __init__(
        self,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        bayesian_bias=True,
        **kwargs,
    ):
        _reject_replaced_options(self, kwargs)
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.use_bias = _validation.boolean("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bayesian_bias = _validation.boolean("bayesian_bias", bayesian_bias)
        self.bias = None

    def build_kernel_and_bias(self, kernel_shape, bias_shape):
        """Creates the kernel posterior and the bias (posterior or point)."""
        if self.uses_curvature_scale:
            _posterior_scale.add_energy_variables(self, self._input_channels(kernel_shape))
        self.kernel = self.add_posterior("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias and self.bayesian_bias:
            self.bias = self.add_posterior("bias", bias_shape, self.bias_initializer)
        elif self.use_bias:
            self.bias = self.add_weight(name="bias", shape=bias_shape, initializer=self.bias_initializer)

    def _cast(self, value):
        return ops.cast(value, self.compute_dtype)

    def _input_channels(self, kernel_shape):
        """Number of input channels (features) whose energy the layer tracks."""
        return kernel_shape[-2]

    def _kernel_energy(self, energy):
        """Per-channel input energy laid out to broadcast against the kernel."""
        return energy[:, None]

    def posterior_energy(self, name):
        if name == "kernel" and self.uses_curvature_scale:
            return self._kernel_energy(ops.convert_to_tensor(self.input_energy))
        return super().posterior_energy(name)

    def _linear(self, inputs, kernel):
        raise NotImplementedError

    # Axis of the features (Dense, channels_last) or channels (channels_first).
    _channel_axis = -1

    def _flip_shape(self, shape):
        """Shape of per-example random signs for a tensor of `shape`.

        One sign per example and feature, shared by the other axes (time
        steps, pixels), which share the weights: the flipped perturbation is
        then one weight perturbation per example.
        """
        channel = self._channel_axis % len(shape)
        return tuple(d if i in (0, channel) else 1 for i, d in enumerate(shape))

    def _broadcastable_bias(self, bias):
        """`bias` reshaped to broadcast against outputs (and their signs)."""
        raise NotImplementedError

    def _add_bias(self, outputs, bias):
        return outputs + self._broadcastable_bias(bias)

    def _outputs(self, inputs, kernel, bias):
        """linear(inputs, kernel) + bias, in the compute dtype."""
        outputs = self._linear(inputs, self._cast(kernel))
        return outputs if bias is None else self._add_bias(outputs, self._cast(bias))

    def _point_bias(self):
        return None if self.bias is None else ops.convert_to_tensor(self.bias)

    def _mean_outputs(self, inputs):
        bias = self.posterior_loc("bias") if "bias" in self._posteriors else self._point_bias()
        return self._outputs(inputs, self.posterior_loc("kernel"), bias)

    def _sample_outputs(self, inputs, seed, training=None):
        """Returns (pre-activation outputs, KL) for one stochastic pass."""
        raise NotImplementedError

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        """Applies kernels[s] (and biases[s]) to block s of the tiled batch."""
        raise NotImplementedError

    # Whether the estimator's noise is already independent per example, so
    # vectorised prediction needs no per-sample weights.
    _independent_per_example = False

    def _vectorized_outputs(self, inputs, seed, num_samples):
        kernels = self.sample_weights("kernel", _random.substream(seed, 0), num_samples)
        if "bias" in self._posteriors:
            biases = self.sample_weights("bias", _random.substream(seed, 1), num_samples)
        else:
            point = self._point_bias()
            biases = None if point is None else ops.broadcast_to(point, (num_samples,) + tuple(point.shape))
        return self._linear_per_sample(
            inputs, self._cast(kernels), None if biases is None else _computed_once(self._cast(biases)), num_samples
        )

    def call(self, inputs, training=None):
        # Layers with autocast off get their inputs uncast: cast them here.
        inputs = ops.cast(inputs, self.compute_dtype)
        if training and self.uses_curvature_scale:
            _posterior_scale.update_energy(self.input_energy, self.input_energy_count, inputs, self._channel_axis)
        seed = self.seed_generator.next()
        num_samples = _sampling.num_samples()
        if num_samples and not self.deterministic and not self._independent_per_example:
            # Prediction only (tfp_uq.predict): no KL term is added.
            outputs = self._vectorized_outputs(inputs, seed, num_samples)
        elif self.deterministic:
            _, kl = self.draw_posteriors(seed, output=None)
            outputs = self._mean_outputs(inputs)
        else:
            outputs, kl = self._sample_outputs(inputs, seed, training)
        if not num_samples:
            self.add_kl_loss(kl, training)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "bayesian_bias": self.bayesian_bias,
            }
        )
        return config


class Reparameterization:
    """Estimator mixin: one weight draw per call, shared across the batch."""

    def _sample_outputs(self, inputs, seed, training=None):
        samples, kl = self.draw_posteriors(seed, output="sample", training=training)
        bias = _computed_once(samples["bias"]) if "bias" in samples else self._point_bias()
        return self._outputs(inputs, samples["kernel"], bias), kl


class Flipout:
    """Estimator mixin: one shared perturbation, signs flipped per example."""

    def _sample_outputs(self, inputs, seed, training=None):
        perturbations, kl = self.draw_posteriors(seed, output="perturbation", training=training)
        sign_in = _random.rademacher(
            self._flip_shape(ops.shape(inputs)), _random.substream(seed, 10), self.compute_dtype, training
        )
        perturbation = self._outputs(inputs * sign_in, perturbations["kernel"], None)
        sign_out = _random.rademacher(
            self._flip_shape(ops.shape(perturbation)), _random.substream(seed, 11), self.compute_dtype, training
        )
        perturbation = perturbation * sign_out
        if "bias" in perturbations:
            # Flipped at the signs' shape (one value per example and channel)
            # before broadcasting: its gradient then sums over pixels first,
            # where a sum of the full-size product took 30 ms of a 160 ms
            # Conv2D step under XLA on CPU.
            bias = self._broadcastable_bias(_computed_once(self._cast(perturbations["bias"])))
            perturbation = perturbation + sign_out * bias
        return _after_kl(self._mean_outputs(inputs) + perturbation, kl), kl


class LocalReparameterization:
    """Estimator mixin: pre-activations sampled independently per example."""

    _independent_per_example = True

    def _sample_outputs(self, inputs, seed, training=None):
        scales, kl = self.draw_posteriors(seed, output="scale", training=training)
        mean = self._mean_outputs(inputs)
        # The variance is computed in float32: squares underflow in float16.
        scale = scales["kernel"]
        variance = self._linear(ops.square(ops.cast(inputs, scale.dtype)), ops.square(scale))
        if "bias" in scales:
            variance = self._add_bias(variance, _computed_once(ops.square(scales["bias"])))
        noise = _random.normal(ops.shape(variance), _random.substream(seed, 10), variance.dtype, training)
        # The tiny constant keeps the gradient of sqrt finite for all-zero inputs.
        return _after_kl(mean + self._cast(ops.sqrt(variance + 1e-12) * noise), kl), kl
