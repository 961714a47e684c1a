"""Bayesian drop-in replacements for `keras.layers.DepthwiseConv1D/2D`."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _spatial

__all__ = [
    "BayesianDepthwiseConv",
    "DepthwiseConv1DFlipout",
    "DepthwiseConv1DReparameterization",
    "DepthwiseConv2DFlipout",
    "DepthwiseConv2DReparameterization",
]


class BayesianDepthwiseConv(_spatial.BayesianSpatial):
    """Shared depthwise part: each input channel convolved with its own `depth_multiplier` filters.

    The kernel (`kernel`, as in Keras) has shape `kernel_size +
    (input_channels, depth_multiplier)`; output channel c * depth_multiplier
    + m is input channel c convolved with filter m. Arguments are those of
    `keras.layers.DepthwiseConv2D` plus the Bayesian ones of the Dense layers.
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        depthwise_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            kernel_initializer=depthwise_initializer,
            **kwargs,
        )
        self.depth_multiplier = _validation.positive_int("depth_multiplier", depth_multiplier)

    def build(self, input_shape):
        channels = self.input_channels(input_shape)
        self.build_kernel_and_bias(
            self.kernel_size + (channels, self.depth_multiplier), (channels * self.depth_multiplier,)
        )
        self.built = True

    def _input_channels(self, kernel_shape):
        # Kernel[..., c, m] reads input channel c.
        return kernel_shape[-2]

    def _linear(self, inputs, kernel, name="kernel"):
        return depthwise(self, inputs, kernel)

    def compute_output_shape(self, input_shape):
        return self._conv_output_shape(input_shape, input_shape[self._channel_axis] * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config["depthwise_initializer"] = config.pop("kernel_initializer")
        config["depth_multiplier"] = self.depth_multiplier
        return config


def depthwise(layer, inputs, kernel):
    """The depthwise convolution of `layer`'s window (a `BayesianSpatial`) with `kernel`."""
    return layer._channels_last(
        lambda x, data_format: ops.depthwise_conv(
            x,
            kernel,
            strides=layer.strides,
            padding=layer.padding,
            data_format=data_format,
            dilation_rate=layer.dilation_rate,
        ),
        inputs,
    )


def _doc(rank, estimator, sentence):
    return f"""{rank}D depthwise convolution with a weight posterior, {estimator}.

    A drop-in for `keras.layers.DepthwiseConv{rank}D` (the blocks of
    MobileNet and EfficientNet): {sentence}

    Args:
        kernel_size, strides, padding ("valid" or "same"), depth_multiplier,
        data_format, dilation_rate, activation, use_bias,
        depthwise_initializer, bias_initializer: as in
            `keras.layers.DepthwiseConv{rank}D`.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    Example:

    >>> layer = tfp_uq.layers.DepthwiseConv{rank}D{estimator.title()}(3, padding="same")
    """


@keras.saving.register_keras_serializable(package="tfp_uq")
class DepthwiseConv1DReparameterization(_estimators.Reparameterization, BayesianDepthwiseConv):
    __doc__ = _doc(1, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class DepthwiseConv2DReparameterization(_estimators.Reparameterization, BayesianDepthwiseConv):
    __doc__ = _doc(2, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class DepthwiseConv1DFlipout(_estimators.Flipout, BayesianDepthwiseConv):
    __doc__ = _doc(1, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class DepthwiseConv2DFlipout(_estimators.Flipout, BayesianDepthwiseConv):
    __doc__ = _doc(2, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 2
