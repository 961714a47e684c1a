"""The layers a Laplace posterior covers, each as one (inputs x outputs) weight matrix.

A block is one layer's kernel reshaped to a matrix with rows for the inputs it
contracts and columns for the outputs it makes, with the bias as one more row
(homogeneous coordinates, as in Martens & Grosse 2015): the layer's
pre-activation at location t of example n is `a_nt^T W` with `a_nt` the input
(patch) at t followed by a 1. A Dense layer has one location per example (or
one per position of its leading axes), a convolution one per output pixel
(its patches, Grosse & Martens 2016), an EinsumDense one per position of its
shared axes.
"""

import keras
import numpy as np
from keras import ops

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
SUPPORTED = (keras.layers.Dense, keras.layers.EinsumDense) + _CONVOLUTIONS
SUPPORTED_NAMES = "Dense, EinsumDense, Conv1D, Conv2D, Conv3D"


def is_supported(layer):
    """Whether `layer` is of a type whose weights a block can hold."""
    return type(layer) in SUPPORTED


class Block:
    """One layer's weights as a `(rows, columns)` matrix; see the module docstring.

    Args:
        layer: a built layer of one of the `SUPPORTED` types.
    """

    def __init__(self, layer):
        if getattr(layer, "quantization_mode", None) is not None or getattr(layer, "lora_enabled", False):
            raise ValueError(
                f"layer {layer.name!r} is quantized or has LoRA enabled; a Laplace posterior needs its plain kernel"
            )
        self.layer = layer
        self.kernel = layer.kernel
        self.bias = layer.bias
        kernel_shape = tuple(self.kernel.shape)
        self.inputs = int(np.prod(kernel_shape[: self._contracted_axes()]))
        self.columns = int(np.prod(kernel_shape[self._contracted_axes() :]))
        self.rows = self.inputs + (self.bias is not None)

    @property
    def name(self):
        return self.layer.name

    @property
    def size(self):
        """Number of parameters."""
        return self.rows * self.columns

    @property
    def variables(self):
        return [self.kernel] if self.bias is None else [self.kernel, self.bias]

    def _contracted_axes(self):
        """How many leading kernel axes the layer contracts with its input."""
        return len(self.kernel.shape) - 1

    def matrix(self, kernel, bias):
        """The `(rows, columns)` matrix of a kernel and bias (None without one)."""
        matrix = ops.reshape(kernel, (self.inputs, self.columns))
        if bias is None:
            return matrix
        return ops.concatenate([matrix, ops.reshape(bias, (1, self.columns))], axis=0)

    def weights(self, matrix):
        """`(kernel, bias)` of a `(rows, columns)` matrix (bias None without one)."""
        kernel = ops.reshape(matrix[: self.inputs], self.kernel.shape)
        bias = None if self.bias is None else ops.reshape(matrix[self.inputs], self.bias.shape)
        return kernel, bias

    def pre_activation(self, inputs, kernel, bias):
        """The layer's output before its activation, for weights `kernel` and `bias`."""
        raise NotImplementedError

    def patches(self, inputs):
        """`(batch, locations, rows)`: the input each output location sees, with a trailing 1 for the bias."""
        patches = self._patches(inputs)
        patches = ops.reshape(patches, (ops.shape(patches)[0], -1, self.inputs))
        if self.bias is None:
            return patches
        return ops.concatenate([patches, ops.ones_like(patches[..., :1])], axis=-1)

    def locations(self, outputs):
        """`(cotangents, batch, locations, columns)` of a `(cotangents, batch, *pre-activation shape)` tensor."""
        outputs = self._channels_last(outputs, leading=2)
        shape = ops.shape(outputs)
        return ops.reshape(outputs, (shape[0], shape[1], -1, self.columns))

    def _channels_last(self, outputs, leading=1):
        return outputs

    def _patches(self, inputs):
        return inputs


class _DenseBlock(Block):
    """keras.layers.Dense: its kernel is already `(inputs, units)`."""

    def pre_activation(self, inputs, kernel, bias):
        outputs = ops.matmul(inputs, kernel)
        return outputs if bias is None else outputs + bias


class _EinsumBlock(Block):
    """keras.layers.EinsumDense of the form `batch shared contracted, contracted out -> batch shared out`.

    e.g. "ab,bc->ac" (a Dense), "abc,cd->abd" (a Dense shared over b) or
    "abc,cde->abde" (a multi-head projection); the bias, if any, spans all of
    the kernel's output axes.
    """

    def __init__(self, layer):
        self._contracted = _einsum_contracted_axes(layer)
        super().__init__(layer)

    def _contracted_axes(self):
        return self._contracted

    def pre_activation(self, inputs, kernel, bias):
        outputs = ops.einsum(self.layer.equation, inputs, kernel)
        return outputs if bias is None else outputs + bias


class _ConvBlock(Block):
    """keras.layers.Conv1D / Conv2D / Conv3D with one group: rows are the patch (kernel window x input channels)."""

    def __init__(self, layer):
        if layer.groups != 1:
            raise ValueError(
                f"layer {layer.name!r} is a grouped convolution (groups={layer.groups}); only groups=1 is supported"
            )
        super().__init__(layer)

    def _contracted_axes(self):
        return self.layer.rank + 1

    def _convolve(self, inputs, kernel):
        padding = self.layer.padding
        if padding == "causal":  # as keras.layers.Conv1D does it: pad the past, then a valid convolution
            left = self.layer.dilation_rate[0] * (self.layer.kernel_size[0] - 1)
            pad = (
                [[0, 0], [left, 0], [0, 0]]
                if self.layer.data_format == "channels_last"
                else [[0, 0], [0, 0], [left, 0]]
            )
            inputs, padding = ops.pad(inputs, pad), "valid"
        return ops.conv(
            inputs,
            kernel,
            strides=list(self.layer.strides),
            padding=padding,
            dilation_rate=self.layer.dilation_rate,
            data_format=self.layer.data_format,
        )

    def pre_activation(self, inputs, kernel, bias):
        outputs = self._convolve(inputs, kernel)
        if bias is None:
            return outputs
        rank = self.layer.rank
        shape = (1,) * (rank + 1) + (-1,) if self.layer.data_format == "channels_last" else (1, -1) + (1,) * rank
        return outputs + ops.reshape(bias, shape)

    def _patches(self, inputs):
        # A convolution with a one-hot kernel copies each window into the channels, in the kernel's
        # (window..., input channel) order, with the layer's own strides, padding and dilation.
        identity = np.eye(self.inputs, dtype=self.kernel.dtype).reshape(tuple(self.kernel.shape[:-1]) + (self.inputs,))
        return self._channels_last(self._convolve(inputs, ops.convert_to_tensor(identity, dtype=inputs.dtype)))

    def _channels_last(self, outputs, leading=1):
        if self.layer.data_format == "channels_last":
            return outputs
        order = list(range(leading)) + list(range(leading + 1, len(outputs.shape))) + [leading]
        return ops.transpose(outputs, order)


def _einsum_contracted_axes(layer):
    """Leading kernel axes an EinsumDense contracts, if its equation has the supported form; else a ValueError."""
    inputs, rest = layer.equation.replace(" ", "").split(",")
    kernel, output = rest.split("->")
    contracted = "".join(c for c in kernel if c not in output)
    made = "".join(c for c in kernel if c in output)
    form = (
        kernel == contracted + made
        and inputs.endswith(contracted)
        and output.endswith(made)
        and inputs[: len(inputs) - len(contracted)] == output[: len(output) - len(made)]
    )
    bias_ok = layer.bias is None or tuple(layer.bias.shape) == tuple(layer.kernel.shape[len(contracted) :])
    if not (form and bias_ok):
        raise ValueError(
            f"EinsumDense layer {layer.name!r} has equation {layer.equation!r} (bias_axes {layer.bias_axes!r}); "
            "a Laplace posterior supports equations 'batch shared contracted, contracted out -> batch shared out' "
            "(e.g. 'ab,bc->ac', 'abc,cd->abd', 'abc,cde->abde') with the bias, if any, on all output axes"
        )
    return len(contracted)


_RULES = {keras.layers.Dense: _DenseBlock, keras.layers.EinsumDense: _EinsumBlock}
_RULES.update({conv: _ConvBlock for conv in _CONVOLUTIONS})


def block(layer):
    """The `Block` of a supported layer."""
    return _RULES[type(layer)](layer)
