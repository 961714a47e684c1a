"""`BayesianSpatial`: what Bayesian convolutions share (window, strides, padding, data format, bias add).

`BayesianConv`, `BayesianConvTranspose`, `BayesianDepthwiseConv` and
`BayesianSeparableConv` subclass it and add their own kernel shapes and
operation; the estimators are those of every `BayesianLinear` layer.
"""

import math

import keras

from tfp_uq import _validation
from tfp_uq.layers import _linear

__all__ = [
    "DATA_FORMATS",
    "FLIPOUT_SENTENCE",
    "PADDINGS",
    "REPARAMETERIZATION_SENTENCE",
    "BayesianSpatial",
    "conv_output_length",
    "spatial_tuple",
]

PADDINGS = ("valid", "same")

# How each estimator draws, in the docstrings of the layers.
REPARAMETERIZATION_SENTENCE = "one kernel draw W = loc + scale * eps per call (Blundell et al. 2015)."
FLIPOUT_SENTENCE = (
    "one perturbation per call, its sign flipped per example and channel, so "
    "examples see pseudo-independent kernels (Wen et al. 2018)."
)
DATA_FORMATS = ("channels_last", "channels_first")


def spatial_tuple(name, value, rank, minimum=1):
    """`value` (an int or `rank` ints, each >= `minimum`) as a tuple of `rank` ints, or ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * rank
    value = tuple(value) if isinstance(value, (tuple, list)) else value
    if not (
        isinstance(value, tuple)
        and len(value) == rank
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    ):
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer or a tuple of {rank} {kind} integers, got {value!r}")
    return value


def conv_output_length(size, kernel, stride, dilation, padding):
    """Output length of a convolution along one axis (None if `size` is)."""
    if size is None:
        return None
    if padding in ("same", "causal"):
        return math.ceil(size / stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


class BayesianSpatial(_linear.BayesianLinear):
    """Shared part of the Bayesian convolutions: y = activation(op(x, W) + b), W, b ~ q.

    Subclasses set `rank` (1, 2 or 3), `paddings` and an estimator mixin, and
    implement `build` and `_linear`.

    Args:
        kernel_size, strides, padding, data_format, dilation_rate: as in
            `keras.layers.Conv2D`.
        **kwargs: `BayesianLinear` arguments.
    """

    rank = None
    paddings = PADDINGS

    def __init__(self, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = spatial_tuple("kernel_size", kernel_size, self.rank)
        self.strides = spatial_tuple("strides", strides, self.rank)
        self.dilation_rate = spatial_tuple("dilation_rate", dilation_rate, self.rank)
        self.padding = _validation.one_of("padding", padding, self.paddings)
        self.data_format = _validation.one_of(
            "data_format", data_format or keras.config.image_data_format(), DATA_FORMATS
        )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 together with dilation_rate > 1 is not supported")
        self._channel_axis = -1 if self.data_format == "channels_last" else 1

    def input_channels(self, input_shape):
        """The channels of `input_shape`, checked: rank and a known channel dimension."""
        name = type(self).__name__
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{name} needs inputs of rank {self.rank + 2}, got shape {tuple(input_shape)}")
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"{name} needs a known channel dimension, got shape {tuple(input_shape)}")
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})
        return channels

    def _spatial_axes(self):
        return range(1, self.rank + 1) if self.data_format == "channels_last" else range(2, self.rank + 2)

    def _output_shape(self, input_shape, spatial, channels):
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, channels)
        return (input_shape[0], channels, *spatial)

    def _conv_output_shape(self, input_shape, channels):
        """The output shape of a convolution of this layer's window, with `channels` outputs."""
        spatial = [
            conv_output_length(input_shape[axis], kernel, stride, dilation, self.padding)
            for axis, kernel, stride, dilation in zip(
                self._spatial_axes(), self.kernel_size, self.strides, self.dilation_rate
            )
        ]
        return self._output_shape(input_shape, spatial, channels)

    def _channels_last(self, operation, inputs):
        """`operation(inputs, data_format)`, with channels_first inputs transposed on TensorFlow.

        TensorFlow's CPU convolutions outside XLA take channels_last only.
        """
        if self.data_format == "channels_last" or keras.backend.backend() != "tensorflow":
            return operation(inputs, self.data_format)
        from keras import ops

        inputs = ops.transpose(inputs, (0, *range(2, self.rank + 2), 1))
        outputs = operation(inputs, "channels_last")
        return ops.transpose(outputs, (0, self.rank + 1, *range(1, self.rank + 1)))

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
            from keras import ops

            return ops.reshape(bias, (-1,) + (1,) * self.rank)
        return bias

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
            }
        )
        return config
