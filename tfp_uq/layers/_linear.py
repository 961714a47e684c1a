"""`BayesianLinear`: the base of Bayesian layers computing activation(linear(x, kernel) + bias).

It holds what Dense and convolution layers share: a kernel and an optional
bias with posteriors, the activation, point and vectorised outputs. An
estimator mixin (`tfp_uq.layers._estimators`) adds its sampling rule; a
layer class adds only its geometry: the linear operation (`_linear`), the
bias broadcast (`_broadcastable_bias`), per-sample application
(`_linear_per_sample`) and shapes.

With the curvature parameterisation of the posterior scale (the default, see
`tfp_uq._parameterization`) the layer keeps the running mean square of each
input channel over its training calls (`input_energy`), as
`keras.layers.BatchNormalization` keeps its moving statistics: the first
1 / (1 - ENERGY_MOMENTUM) batches are averaged with equal weights (the first
replaces the initial value), later ones exponentially.
"""

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers._estimators import computed_once

__all__ = ["ENERGY_MOMENTUM", "REPLACED_OPTIONS", "BayesianLinear"]

# Momentum of the running mean square of the inputs (BatchNormalization's default).
ENERGY_MOMENTUM = 0.99

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

    # Axis of the features (Dense, channels_last) or channels (channels_first).
    _channel_axis = -1

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
            # "mean": under tf.distribute each replica's update of its own batch is averaged.
            self.input_energy = self.add_weight(
                name="input_energy",
                shape=(self._input_channels(kernel_shape),),
                initializer="ones",
                trainable=False,
                aggregation="mean",
            )
            self.input_energy_count = self.add_weight(
                name="input_energy_count", shape=(), initializer="zeros", trainable=False, aggregation="mean"
            )
        self.kernel = self.add_posterior("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias and self.bayesian_bias:
            self.bias = self.add_posterior("bias", bias_shape, self.bias_initializer)
        elif self.use_bias:
            self.bias = self.add_weight(name="bias", shape=bias_shape, initializer=self.bias_initializer)

    # ------------------------------------------------------- input statistics
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

    def _update_input_energy(self, inputs):
        """Moves `input_energy` towards this batch's mean square per channel."""
        channel = self._channel_axis % len(inputs.shape)
        axes = tuple(axis for axis in range(len(inputs.shape)) if axis != channel)
        batch_energy = ops.mean(ops.square(ops.cast(inputs, self.input_energy.dtype)), axis=axes)
        count = ops.convert_to_tensor(self.input_energy_count) + 1.0
        rate = ops.maximum(1.0 / count, 1.0 - ENERGY_MOMENTUM)
        energy = ops.convert_to_tensor(self.input_energy)
        self.input_energy.assign(energy + rate * (batch_energy - energy))
        self.input_energy_count.assign(count)

    def call(self, inputs, training=None):
        if training and self.uses_curvature_scale:
            self._update_input_energy(inputs)
        return super().call(inputs, training)

    # ---------------------------------------------------------------- geometry
    def _linear(self, inputs, kernel):
        """linear(inputs, kernel): the layer's matrix product or convolution."""
        raise NotImplementedError(f"{type(self).__name__} must implement _linear")

    def _broadcastable_bias(self, bias):
        """`bias` reshaped to broadcast against outputs (and their signs)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _broadcastable_bias")

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        """Applies kernels[s] (and biases[s]) to block s of the tiled batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement _linear_per_sample")

    def _add_bias(self, outputs, bias):
        return outputs + self._broadcastable_bias(bias)

    def _flip_shape(self, shape):
        """Shape of per-example random signs for a tensor of `shape`.

        One sign per example and feature, shared by the other axes (time
        steps, pixels), which share the weights: the flipped perturbation is
        then one weight perturbation per example.
        """
        channel = self._channel_axis % len(shape)
        return tuple(d if i in (0, channel) else 1 for i, d in enumerate(shape))

    # ------------------------------------------------------------------ outputs
    def _cast(self, value):
        return ops.cast(value, self.compute_dtype)

    def _outputs(self, inputs, kernel, bias):
        """linear(inputs, kernel) + bias, in the compute dtype."""
        outputs = self._linear(inputs, self._cast(kernel))
        return outputs if bias is None else self._add_bias(outputs, self._cast(bias))

    def _point_bias(self):
        return None if self.bias is None else ops.convert_to_tensor(self.bias)

    def _mean_outputs(self, inputs):
        bias = self.posterior_loc("bias") if "bias" in self._posteriors else self._point_bias()
        return self._outputs(inputs, self.posterior_loc("kernel"), bias)

    def _vectorized_outputs(self, inputs, seed, num_samples):
        kernels = self.sample_weights("kernel", _random.substream(seed, self.weight_stream("kernel")), num_samples)
        if "bias" in self._posteriors:
            biases = self.sample_weights("bias", _random.substream(seed, self.weight_stream("bias")), num_samples)
        else:
            point = self._point_bias()
            biases = None if point is None else ops.broadcast_to(point, (num_samples,) + tuple(point.shape))
        biases = None if biases is None else computed_once(self._cast(biases))
        return self._linear_per_sample(inputs, self._cast(kernels), biases, num_samples)

    def _activate(self, outputs):
        return outputs if self.activation is None else self.activation(outputs)

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
