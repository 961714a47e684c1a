"""`BayesianLinear`: the base of Bayesian layers computing activation(linear(x, kernels) + bias).

It holds what Dense, convolution and projection layers share: kernels and an
optional bias with posteriors, the activation, point and vectorised outputs.
An estimator mixin (`tfp_uq.layers._estimators`) adds its sampling rule; a
layer class adds only its geometry: the linear operation (`_linear`), the
bias broadcast (`_broadcastable_bias`), the shape of Flipout's random signs
(`_flip_shape`), per-sample application (`_linear_per_sample`) and shapes.

Most layers have one kernel. A layer that is a chain of linear maps (a
separable convolution: depthwise, then pointwise) names its kernels in
`kernel_names`, inputs first; each has its own posterior, the estimator
applies its rule to each map in turn, and the bias follows the last.

With the curvature parameterisation of the posterior scale (the default, see
`tfp_uq._parameterization`) a layer whose kernel reads input channels (Dense, convolutions) keeps the
running mean square of each input channel over its training calls (`input_energy`), as
`keras.layers.BatchNormalization` keeps its moving statistics: the first
1 / (1 - ENERGY_MOMENTUM) batches are averaged with equal weights (the first
replaces the initial value), later ones exponentially.
"""

import keras
from keras import ops

from tfp_uq import _random, _validation
from tfp_uq.layers._base import BayesianLayer
from tfp_uq.layers._estimators import computed_once

__all__ = ["ENERGY_MOMENTUM", "REPLACED_OPTIONS", "BayesianLinear", "reject_replaced_options"]

# Momentum of the running mean square of the inputs (BatchNormalization's default).
ENERGY_MOMENTUM = 0.99

# Options of the Keras parameter layers that a Bayesian layer replaces, and with what.
_PRIOR = "the prior's KL term regularises the weights: choose `prior=` instead"
_CONSTRAINT = "sampled weights would not satisfy a constraint on their mean"
REPLACED_OPTIONS = {
    **{f"{weight}_regularizer": _PRIOR for weight in ("kernel", "bias", "recurrent", "depthwise", "pointwise")},
    "embeddings_regularizer": _PRIOR,
    **{f"{weight}_constraint": _CONSTRAINT for weight in ("kernel", "bias", "recurrent", "depthwise", "pointwise")},
    "embeddings_constraint": _CONSTRAINT,
    "lora_rank": "use tfp_uq.layers.BayesianLoRA for a Bayesian low-rank update",
    "quantization_config": "a quantized kernel has no posterior: convert the float layer",
}


def reject_replaced_options(layer, kwargs):
    """Removes the replaced options from `kwargs`; raises ValueError if one is set."""
    for option, reason in REPLACED_OPTIONS.items():
        if kwargs.pop(option, None) is not None:
            raise ValueError(f"{type(layer).__name__} does not take {option}: {reason}")
    kwargs.pop("lora_alpha", None)  # meaningful only with lora_rank


class BayesianLinear(BayesianLayer):
    """Base of Bayesian layers computing activation(linear(x, kernels) + bias).

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

    # The posteriors applied in turn, inputs first (`_linear`'s `name`).
    kernel_names = ("kernel",)
    # Axis of the features (Dense, channels_last) or channels (channels_first).
    _channel_axis = -1
    # Vectorised prediction loops over samples, unless a layer batches them.
    unrolls_samples = True

    def __init__(
        self,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        bayesian_bias=True,
        **kwargs,
    ):
        reject_replaced_options(self, kwargs)
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.use_bias = _validation.boolean("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bayesian_bias = _validation.boolean("bayesian_bias", bayesian_bias)
        self.bias = None

    def build_kernel_and_bias(self, kernel_shape, bias_shape):
        """Creates the kernel posterior and the bias (posterior or point)."""
        channels = self._input_channels(kernel_shape) if self.uses_curvature_scale else None
        if channels is not None:
            # "mean": under tf.distribute each replica's update of its own batch is averaged.
            self.input_energy = self.add_weight(
                name="input_energy",
                shape=(channels,),
                initializer="ones",
                trainable=False,
                aggregation="mean",
            )
            self.input_energy_count = self.add_weight(
                name="input_energy_count", shape=(), initializer="zeros", trainable=False, aggregation="mean"
            )
        self.kernel = self.add_posterior("kernel", kernel_shape, self.kernel_initializer)
        self.build_bias(bias_shape)

    def build_bias(self, bias_shape):
        """Creates the bias, a posterior or a point weight, if the layer has one."""
        if self.use_bias and self.bayesian_bias:
            self.bias = self.add_posterior("bias", bias_shape, self.bias_initializer)
        elif self.use_bias:
            self.bias = self.add_weight(name="bias", shape=bias_shape, initializer=self.bias_initializer)

    # ------------------------------------------------------- input statistics
    def _input_channels(self, kernel_shape):
        """Number of input channels whose energy the layer tracks, or None.

        None (here): the kernel's rows are not channels of the layer's input
        (an einsum, a chain of maps), and the curvature scale reads energy 1.
        """
        del kernel_shape
        return None

    def _kernel_energy(self, energy):
        """Per-channel input energy laid out to broadcast against the kernel (channels on axis -2)."""
        return energy[:, None]

    @property
    def _tracks_input_energy(self):
        return self.uses_curvature_scale and hasattr(self, "input_energy")

    def posterior_energy(self, name):
        if name == "kernel" and self._tracks_input_energy:
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
        if training and self._tracks_input_energy:
            self._update_input_energy(inputs)
        return super().call(inputs, training)

    # ---------------------------------------------------------------- geometry
    def _linear(self, inputs, kernel, name="kernel"):
        """linear(inputs, kernel): the layer's map `name` (a matrix product, a convolution)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _linear")

    def _broadcastable_bias(self, bias):
        """`bias` reshaped to broadcast against outputs (and their signs)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _broadcastable_bias")

    def _add_bias(self, outputs, bias):
        return outputs + self._broadcastable_bias(bias)

    def _flip_shape(self, shape, side="input"):
        """Shape of Flipout's per-example random signs for a tensor of `shape`.

        `side` is "input" (the signs of a map's inputs) or "output". One sign
        per example and feature, shared by the other axes (time steps,
        pixels), which share the weights: the flipped perturbation is then
        one weight perturbation per example.
        """
        del side
        channel = self._channel_axis % len(shape)
        return tuple(d if i in (0, channel) else 1 for i, d in enumerate(shape))

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        """Applies kernels[name][s] (and biases[s]) to block s of the tiled batch.

        By default one pass per sample (`unrolls_samples`): measured faster on
        CPU than one grouped convolution over samples stacked as channel
        groups. Layers that can batch samples (Dense, EinsumDense) override it.
        """
        blocks = ops.split(inputs, num_samples, axis=0)
        outputs = [
            self._outputs(block, {name: kernel[s] for name, kernel in kernels.items()}, None)
            for s, block in enumerate(blocks)
        ]
        if biases is not None:
            outputs = [self._add_bias(out, biases[s]) for s, out in enumerate(outputs)]
        return ops.concatenate(outputs, axis=0)

    # ------------------------------------------------------------------ outputs
    def _cast(self, value):
        return ops.cast(value, self.compute_dtype)

    def _outputs(self, inputs, kernels, bias):
        """The maps of `kernels` (a dict by name) applied in turn, plus `bias`, in the compute dtype."""
        outputs = inputs
        for name in self.kernel_names:
            outputs = self._linear(outputs, self._cast(kernels[name]), name)
        return outputs if bias is None else self._add_bias(outputs, self._cast(bias))

    def _point_bias(self):
        return None if self.bias is None else ops.convert_to_tensor(self.bias)

    def _mean_bias(self):
        return self.posterior_loc("bias") if "bias" in self._posteriors else self._point_bias()

    def _mean_outputs(self, inputs):
        return self._outputs(inputs, {name: self.posterior_loc(name) for name in self.kernel_names}, self._mean_bias())

    def _vectorized_outputs(self, inputs, seed, num_samples):
        kernels = {
            name: self._cast(self.sample_weights(name, _random.substream(seed, self.weight_stream(name)), num_samples))
            for name in self.kernel_names
        }
        if "bias" in self._posteriors:
            biases = self.sample_weights("bias", _random.substream(seed, self.weight_stream("bias")), num_samples)
        else:
            point = self._point_bias()
            biases = None if point is None else ops.broadcast_to(point, (num_samples,) + tuple(point.shape))
        biases = None if biases is None else computed_once(self._cast(biases))
        return self._linear_per_sample(inputs, kernels, biases, num_samples)

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
