"""Bayesian drop-in replacements for `keras.layers.Conv1DTranspose/2DTranspose/3DTranspose`."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _spatial

__all__ = [
    "BayesianConvTranspose",
    "Conv1DTransposeFlipout",
    "Conv1DTransposeReparameterization",
    "Conv2DTransposeFlipout",
    "Conv2DTransposeReparameterization",
    "Conv3DTransposeFlipout",
    "Conv3DTransposeReparameterization",
]


def transpose_output_length(size, kernel, stride, dilation, padding, output_padding):
    """Output length of a transposed convolution along one axis, as Keras computes it (None if `size` is)."""
    if size is None:
        return None
    kernel = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(kernel, stride) - kernel if output_padding is None else output_padding
        return (size - 1) * stride + kernel + extra
    if output_padding is None:
        return size * stride
    return (size - 1) * stride + kernel % 2 + output_padding


class BayesianConvTranspose(_spatial.BayesianSpatial):
    """Shared transposed-convolution part: y = activation(conv_transpose(x, W) + b), W, b ~ q.

    The kernel has Keras's layout, `kernel_size + (filters, input_channels)`.
    Arguments are those of `keras.layers.Conv2DTranspose` plus the Bayesian
    ones of the Dense layers.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, **kwargs)
        self.filters = _validation.positive_int("filters", filters)
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = _spatial.spatial_tuple("output_padding", output_padding, self.rank, minimum=0)
            for axis, (pad, stride) in enumerate(zip(self.output_padding, self.strides)):
                if pad >= stride:
                    raise ValueError(
                        f"output_padding must be less than strides on every axis, got output_padding="
                        f"{self.output_padding} and strides={self.strides} (axis {axis})"
                    )

    def build(self, input_shape):
        channels = self.input_channels(input_shape)
        self.build_kernel_and_bias(self.kernel_size + (self.filters, channels), (self.filters,))
        self.built = True

    def _input_channels(self, kernel_shape):
        # Kernel[..., o, c] reads input channel c.
        return kernel_shape[-1]

    def _kernel_energy(self, energy):
        # [rows, columns] of the kernel's last two axes, as the compiled kernels read it.
        return ops.broadcast_to(energy[None, :], (self.filters, ops.shape(energy)[0]))

    def _linear(self, inputs, kernel, name="kernel"):
        return self._channels_last(
            lambda x, data_format: ops.conv_transpose(
                x,
                kernel,
                strides=self.strides,
                padding=self.padding,
                output_padding=self.output_padding,
                data_format=data_format,
                dilation_rate=self.dilation_rate,
            ),
            inputs,
        )

    def compute_output_shape(self, input_shape):
        output_padding = self.output_padding or (None,) * self.rank
        spatial = [
            transpose_output_length(input_shape[axis], kernel, stride, dilation, self.padding, pad)
            for axis, kernel, stride, dilation, pad in zip(
                self._spatial_axes(), self.kernel_size, self.strides, self.dilation_rate, output_padding
            )
        ]
        return self._output_shape(input_shape, spatial, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "output_padding": self.output_padding})
        return config


def _doc(rank, estimator, sentence):
    return f"""{rank}D transposed convolution with a weight posterior, {estimator}.

    A drop-in for `keras.layers.Conv{rank}DTranspose` (the upsampling path of
    a U-Net): {sentence}

    Args:
        filters, kernel_size, strides, padding ("valid" or "same"),
        output_padding, data_format, dilation_rate, activation, use_bias,
        kernel_initializer, bias_initializer: as in
            `keras.layers.Conv{rank}DTranspose`.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    Example:

    >>> up = tfp_uq.layers.Conv{rank}DTranspose{estimator.title()}(16, 2, strides=2)
    """


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv1DTransposeReparameterization(_estimators.Reparameterization, BayesianConvTranspose):
    __doc__ = _doc(1, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv2DTransposeReparameterization(_estimators.Reparameterization, BayesianConvTranspose):
    __doc__ = _doc(2, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv3DTransposeReparameterization(_estimators.Reparameterization, BayesianConvTranspose):
    __doc__ = _doc(3, "reparameterization", _spatial.REPARAMETERIZATION_SENTENCE)
    rank = 3


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv1DTransposeFlipout(_estimators.Flipout, BayesianConvTranspose):
    __doc__ = _doc(1, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 1


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv2DTransposeFlipout(_estimators.Flipout, BayesianConvTranspose):
    __doc__ = _doc(2, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 2


@keras.saving.register_keras_serializable(package="tfp_uq")
class Conv3DTransposeFlipout(_estimators.Flipout, BayesianConvTranspose):
    __doc__ = _doc(3, "flipout", _spatial.FLIPOUT_SENTENCE)
    rank = 3
