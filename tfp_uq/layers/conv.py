"""Bayesian drop-in replacements for `keras.layers.Conv1D/2D/3D`."""

import math

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _linear

__all__ = [
    "BayesianConv",
    "Conv1DReparameterization",
    "Conv2DReparameterization",
    "Conv3DReparameterization",
    "Conv1DFlipout",
    "Conv2DFlipout",
    "Conv3DFlipout",
]


PADDINGS = ("valid", "same")
# "causal" (left padding of the time axis, as in keras.layers.Conv1D) is 1D only.
PADDINGS_1D = PADDINGS + ("causal",)
DATA_FORMATS = ("channels_last", "channels_first")


def _tuple(name, value, rank):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * rank
    value = tuple(value) if isinstance(value, (tuple, list)) else value
    if not (isinstance(value, tuple) and len(value) == rank and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f"{name} must be a positive integer or a tuple of {rank} positive integers, got {value!r}")
    return value


class BayesianConv(_linear.BayesianLinear):
    """Shared convolution part: y = activation(conv(x, W) + b), W, b ~ q.

    Subclasses set `rank` (1, 2 or 3) and an estimator mixin. Arguments are
    those of `keras.layers.ConvND` (filters, kernel_size, strides, padding,
    data_format, dilation_rate, groups, activation, use_bias, initializers) plus the
    Bayesian ones of the Dense layers.
    """

    unrolls_samples = True  # _linear_per_sample loops over samples

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _validation.positive_int("filters", filters)
        self.groups = _validation.positive_int("groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"filters ({self.filters}) must be divisible by groups ({self.groups})")
        self.kernel_size = _tuple("kernel_size", kernel_size, self.rank)
        self.strides = _tuple("strides", strides, self.rank)
        self.dilation_rate = _tuple("dilation_rate", dilation_rate, self.rank)
        self.padding = _validation.one_of("padding", padding, PADDINGS_1D if self.rank == 1 else PADDINGS)
        self.data_format = _validation.one_of(
            "data_format", data_format or keras.config.image_data_format(), DATA_FORMATS
        )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 together with dilation_rate > 1 is not supported")
        self._channel_axis = -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        name = type(self).__name__
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{name} needs inputs of rank {self.rank + 2}, got shape {tuple(input_shape)}")
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"{name} needs a known channel dimension, got shape {tuple(input_shape)}")
        if channels % self.groups:
            raise ValueError(f"{name}: the input's {channels} channels must be divisible by groups ({self.groups})")
        # Grouped convolution: each group of channels // groups inputs feeds
        # filters // groups outputs, as in keras.layers.ConvND.
        self.build_kernel_and_bias(self.kernel_size + (channels // self.groups, self.filters), (self.filters,))
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})
        self.built = True

    def _input_channels(self, kernel_shape):
        return kernel_shape[-2] * self.groups

    def _kernel_energy(self, energy):
        if self.groups == 1:
            return energy[:, None]
        # Kernel[..., i, o] reads input channel (group of o) * channels_per_group + i.
        per_group = ops.transpose(ops.reshape(energy, (self.groups, -1)))
        return ops.repeat(per_group, self.filters // self.groups, axis=1)

    def _linear(self, inputs, kernel):
        padding = self.padding
        if padding == "causal":
            # Pad the past only, so output t sees inputs <= t (keras.layers.Conv1D).
            time_axis = 1 if self.data_format == "channels_last" else 2
            pad = [[0, 0]] * 3
            pad[time_axis] = [self.dilation_rate[0] * (self.kernel_size[0] - 1), 0]
            inputs, padding = ops.pad(inputs, pad), "valid"
        data_format = self.data_format
        channels_first_on_tf = data_format == "channels_first" and keras.backend.backend() == "tensorflow"
        if channels_first_on_tf:
            # TensorFlow's CPU convolutions outside XLA take channels_last only.
            inputs, data_format = ops.transpose(inputs, (0, *range(2, self.rank + 2), 1)), "channels_last"
        outputs = ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=self.dilation_rate,
        )
        if channels_first_on_tf:
            outputs = ops.transpose(outputs, (0, self.rank + 1, *range(1, self.rank + 1)))
        return outputs

    def _add_bias(self, outputs, bias):
        if keras.backend.backend() != "tensorflow":
            return super()._add_bias(outputs, bias)
        import tensorflow as tf

        # BiasAdd, not a broadcast add: TensorFlow fuses it into the
        # convolution, and its gradient is BiasAddGrad, not a generic sum over
        # batch and pixels (Conv2DReparameterization, no XLA: 39 -> 34 ms per
        # step of the CNN in benchmarks/layers_speed.py, Keras Conv2D 34 ms).
        data_format = "NC..." if self.data_format == "channels_first" else "N...C"
        return tf.nn.bias_add(outputs, bias, data_format=data_format)

    def _broadcastable_bias(self, bias):
        if self.data_format == "channels_first":
            return ops.reshape(bias, (-1,) + (1,) * self.rank)
        return bias

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        # Per-sample convolutions: measured faster on CPU than one grouped
        # convolution over samples stacked as channel groups.
        blocks = ops.split(inputs, num_samples, axis=0)
        outputs = [self._linear(block, kernels[s]) for s, block in enumerate(blocks)]
        if biases is not None:
            outputs = [self._add_bias(out, biases[s]) for s, out in enumerate(outputs)]
        return ops.concatenate(outputs, axis=0)

    def compute_output_shape(self, input_shape):
        spatial_axes = range(1, self.rank + 1) if self.data_format == "channels_last" else range(2, self.rank + 2)
        spatial = []
        for size, kernel, stride, dilation in zip(
            (input_shape[i] for i in spatial_axes), self.kernel_size, self.strides, self.dilation_rate
        ):
            if size is None:
                spatial.append(None)
            elif self.padding in ("same", "causal"):
                spatial.append(math.ceil(size / stride))
            else:
                spatial.append((size - dilation * (kernel - 1) - 1) // stride + 1)
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, self.filters)
        return (input_shape[0], self.filters, *spatial)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "groups": self.groups,
            }
        )
        return config


def _doc(rank, estimator, sentence):
    return f"""{rank}D convolution with a weight posterior, {estimator}.

    A drop-in for `keras.layers.Conv{rank}D`: {sentence}

    Args:
        filters, kernel_size, strides, padding ("valid", "same", or for 1D
            also "causal"),
        data_format, dilation_rate, groups, activation, use_bias,
        kernel_initializer, bias_initializer: as in `keras.layers.Conv{rank}D`.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    Example:

    >>> layer = tfp_uq.layers.Conv{rank}D{estimator.title().replace(" ", "")}(16, 3, activation="relu")
    """


_REPARAMETERIZATION = "one kernel draw W = loc + scale * eps per call (Blundell et al. 2015)."
_FLIPOUT = (
    "one perturbation per call, its sign flipped per example and channel, so "
    "examples see pseudo-independent kernels (Wen et al. 2018)."
)


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv1DReparameterization(_estimators.Reparameterization, BayesianConv):
    __doc__ = _doc(1, "reparameterization", _REPARAMETERIZATION)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv2DReparameterization(_estimators.Reparameterization, BayesianConv):
    __doc__ = _doc(2, "reparameterization", _REPARAMETERIZATION)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv3DReparameterization(_estimators.Reparameterization, BayesianConv):
    __doc__ = _doc(3, "reparameterization", _REPARAMETERIZATION)
    rank = 3


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv1DFlipout(_estimators.Flipout, BayesianConv):
    __doc__ = _doc(1, "flipout", _FLIPOUT)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv2DFlipout(_estimators.Flipout, BayesianConv):
    __doc__ = _doc(2, "flipout", _FLIPOUT)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv3DFlipout(_estimators.Flipout, BayesianConv):
    __doc__ = _doc(3, "flipout", _FLIPOUT)
    rank = 3
