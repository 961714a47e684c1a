"""Bayesian drop-in replacements for `keras.layers.SeparableConv1D/2D`."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _spatial
from tfp_uq.layers.depthwise_conv import depthwise

__all__ = [
    "BayesianSeparableConv",
    "SeparableConv1DFlipout",
    "SeparableConv1DReparameterization",
    "SeparableConv2DFlipout",
    "SeparableConv2DReparameterization",
]


class BayesianSeparableConv(_spatial.BayesianSpatial):
    """Shared separable part: a depthwise convolution, then a pointwise (1x1) one, then the bias.

    y = activation(pointwise(depthwise(x, D), P) + b) with two posteriors,
    `depthwise_kernel` (`kernel_size + (input_channels, depth_multiplier)`)
    and `pointwise_kernel` (`(1,) * rank + (input_channels *
    depth_multiplier, filters)`), as in Keras. Each map gets its estimator's
    rule in turn (Flipout: its own signs). Arguments are those of
    `keras.layers.SeparableConv2D` plus the Bayesian ones of the Dense layers.
    """

    kernel_names = ("depthwise_kernel", "pointwise_kernel")

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, **kwargs)
        self.filters = _validation.positive_int("filters", filters)
        self.depth_multiplier = _validation.positive_int("depth_multiplier", depth_multiplier)
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer)
        self.pointwise_initializer = keras.initializers.get(pointwise_initializer)

    def build(self, input_shape):
        channels = self.input_channels(input_shape)
        self.depthwise_kernel = self.add_posterior(
            "depthwise_kernel", self.kernel_size + (channels, self.depth_multiplier), self.depthwise_initializer
        )
        self.pointwise_kernel = self.add_posterior(
            "pointwise_kernel",
            (1,) * self.rank + (channels * self.depth_multiplier, self.filters),
            self.pointwise_initializer,
        )
        self.build_bias((self.filters,))
        self.built = True

    def _linear(self, inputs, kernel, name="kernel"):
        if name == "depthwise_kernel":
            return depthwise(self, inputs, kernel)
        return self._channels_last(
            lambda x, data_format: ops.conv(x, kernel, strides=1, padding="valid", data_format=data_format), inputs
        )

    def compute_output_shape(self, input_shape):
        return self._conv_output_shape(input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        del config["kernel_initializer"]
        config.update(
            {
                "filters": self.filters,
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": keras.initializers.serialize(self.depthwise_initializer),
                "pointwise_initializer": keras.initializers.serialize(self.pointwise_initializer),
            }
        )
        return config


def _doc(rank, estimator, sentence):
    return f"""{rank}D separable convolution with posteriors on both kernels, {estimator}.

    A drop-in for `keras.layers.SeparableConv{rank}D` (Xception's blocks):
    {sentence}

    Args:
        filters, kernel_size, strides, padding ("valid" or "same"),
        data_format, dilation_rate, depth_multiplier, activation, use_bias,
        depthwise_initializer, pointwise_initializer, bias_initializer: as in
            `keras.layers.SeparableConv{rank}D`.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    Example:

    >>> layer = tfp_uq.layers.SeparableConv{rank}D{estimator.title()}(32, 3, padding="same")
    """


@keras.saving.register_keras_serializable(package="tfp_uq")
class SeparableConv1DReparameterization(_estimators.Reparameterization, BayesianSeparableConv):
    __doc__ = _doc(1, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class SeparableConv2DReparameterization(_estimators.Reparameterization, BayesianSeparableConv):
    __doc__ = _doc(2, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class SeparableConv1DFlipout(_estimators.Flipout, BayesianSeparableConv):
    __doc__ = _doc(1, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class SeparableConv2DFlipout(_estimators.Flipout, BayesianSeparableConv):
    __doc__ = _doc(2, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 2
