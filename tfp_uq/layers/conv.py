"""Bayesian drop-in replacements for `keras.layers.Conv1D/2D/3D`."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _spatial

__all__ = [
    "BayesianConv",
    "Conv1DReparameterization",
    "Conv2DReparameterization",
    "Conv3DReparameterization",
    "Conv1DFlipout",
    "Conv2DFlipout",
    "Conv3DFlipout",
]


class BayesianConv(_spatial.BayesianSpatial):
    """Shared convolution part: y = activation(conv(x, W) + b), W, b ~ q.

    Subclasses set `rank` (1, 2 or 3) and an estimator mixin. Arguments are
    those of `keras.layers.ConvND` (filters, kernel_size, strides, padding,
    data_format, dilation_rate, groups, activation, use_bias, initializers) plus the
    Bayesian ones of the Dense layers.
    """

    def __init__(
        self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, groups=1, **kwargs
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, **kwargs)
        self.filters = _validation.positive_int("filters", filters)
        self.groups = _validation.positive_int("groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"filters ({self.filters}) must be divisible by groups ({self.groups})")

    @property
    def paddings(self):
        # "causal" (left padding of the time axis, as in keras.layers.Conv1D) is 1D only.
        return _spatial.PADDINGS + (("causal",) if self.rank == 1 else ())

    def build(self, input_shape):
        channels = self.input_channels(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"{type(self).__name__}: the input's {channels} channels must be divisible by groups ({self.groups})"
            )
        # Grouped convolution: each group of channels // groups inputs feeds
        # filters // groups outputs, as in keras.layers.ConvND.
        self.build_kernel_and_bias(self.kernel_size + (channels // self.groups, self.filters), (self.filters,))
        self.built = True

    def _input_channels(self, kernel_shape):
        return kernel_shape[-2] * self.groups

    def _kernel_energy(self, energy):
        if self.groups == 1:
            return energy[:, None]
        # Kernel[..., i, o] reads input channel (group of o) * channels_per_group + i.
        per_group = ops.transpose(ops.reshape(energy, (self.groups, -1)))
        return ops.repeat(per_group, self.filters // self.groups, axis=1)

    def _linear(self, inputs, kernel, name="kernel"):
        padding = self.padding
        if padding == "causal":
            # Pad the past only, so output t sees inputs <= t (keras.layers.Conv1D).
            time_axis = 1 if self.data_format == "channels_last" else 2
            pad = [[0, 0]] * 3
            pad[time_axis] = [self.dilation_rate[0] * (self.kernel_size[0] - 1), 0]
            inputs, padding = ops.pad(inputs, pad), "valid"
        return self._channels_last(
            lambda x, data_format: ops.conv(
                x,
                kernel,
                strides=self.strides,
                padding=padding,
                data_format=data_format,
                dilation_rate=self.dilation_rate,
            ),
            inputs,
        )

    def compute_output_shape(self, input_shape):
        return self._conv_output_shape(input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "groups": self.groups})
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


_REPARAMETERIZATION = _spatial.REPARAMETERIZATION_SENTENCE
_FLIPOUT = _spatial.FLIPOUT_SENTENCE


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
