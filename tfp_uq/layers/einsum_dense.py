"""Bayesian drop-in replacements for `keras.layers.EinsumDense` (attention projections)."""

import collections
import re

import keras
from keras import ops

from tfp_uq.layers import _estimators, _linear

__all__ = ["BayesianEinsumDense", "EinsumDenseFlipout", "EinsumDenseReparameterization", "einsum_shapes"]

_EQUATION = re.compile(r"(\.\.\.)?([a-zA-Z]+)(\.\.\.)?,([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)(\.\.\.)?")

EinsumShapes = collections.namedtuple(
    "EinsumShapes", ["kernel", "bias", "output", "input_axes", "output_axes", "kernel_input_axes", "kernel_output_axes"]
)
EinsumShapes.__doc__ = """What an EinsumDense equation implies for one input shape.

kernel, bias (or None), output: shapes. input_axes, output_axes: the axes of
the input and output whose letter is one of the kernel's (the axes that do
not share a weight). kernel_input_axes, kernel_output_axes: the kernel's
fan-in and fan-out axes, as Keras gives them to a variance-scaling
initializer."""


def _parse(equation):
    match = _EQUATION.fullmatch(equation) if isinstance(equation, str) else None
    if match is None or not (
        (not any(match.group(i) for i in (1, 3, 5, 7)))
        or (match.group(1) and match.group(5) and not (match.group(3) or match.group(7)))
        or (match.group(3) and match.group(7) and not (match.group(1) or match.group(5)))
    ):
        raise ValueError(f"equation must have the form 'X,Y->Z', '...X,Y->...Z' or 'X...,Y->Z...', got {equation!r}")
    return match


def einsum_shapes(equation, bias_axes, input_shape, output_shape):
    """The shapes `keras.layers.EinsumDense(equation, output_shape, bias_axes=...)` has for `input_shape`.

    Equations take the forms Keras allows: "X,Y->Z", "...X,Y->...Z" or
    "X...,Y->Z..." (X the input's letters, Y the kernel's, Z the output's).
    `output_shape` gives the output's dimensions after the batch (and
    elided) ones; a None there is taken from the input.

    Returns:
        An `EinsumShapes`.

    Raises:
        ValueError: the equation, the shapes or `bias_axes` do not fit.
    """
    match = _parse(equation)
    left, right = bool(match.group(1)), bool(match.group(3))
    input_spec, kernel_spec, output_spec = match.group(2), match.group(4), match.group(6)
    rank = len(input_shape)
    elided = rank - len(input_spec)
    if elided < 0 or (elided and not (left or right)) or (left and elided == 0):
        raise ValueError(f"equation {equation!r} does not fit inputs of shape {tuple(input_shape)}")
    partial = [output_shape] if isinstance(output_shape, int) else list(output_shape)
    if left:
        full = list(input_shape[:elided]) + partial
        offset = elided
    elif right:
        full = [input_shape[0]] + partial + list(input_shape[rank - elided :])
        offset = 0
    else:
        full = [input_shape[0]] + partial
        offset = 0
    if len(full) != len(output_spec) + elided:
        raise ValueError(
            f"output_shape {tuple(partial)} does not fit equation {equation!r}: it needs "
            f"{len(output_spec) + elided - len(full) + len(partial)} dimensions"
        )
    input_axis = {letter: offset + i for i, letter in enumerate(input_spec)}
    output_axis = {letter: offset + i for i, letter in enumerate(output_spec)}
    for letter, axis in output_axis.items():
        if letter in input_axis:
            size = input_shape[input_axis[letter]]
            if full[axis] is not None and size is not None and full[axis] != size:
                raise ValueError(
                    f"output_shape and the input disagree on dimension {letter!r} of {equation!r}: "
                    f"{full[axis]} against {size}"
                )
            full[axis] = size if full[axis] is None else full[axis]
        elif letter not in kernel_spec:
            raise ValueError(f"output dimension {letter!r} of {equation!r} is neither the input's nor the kernel's")
    kernel, kernel_inputs, kernel_outputs = [], [], []
    for i, letter in enumerate(kernel_spec):
        if letter in output_axis:
            kernel.append(full[output_axis[letter]])
            kernel_outputs.append(i)
        elif letter in input_axis:
            kernel.append(input_shape[input_axis[letter]])
            kernel_inputs.append(i)
        else:
            raise ValueError(f"kernel dimension {letter!r} of {equation!r} is neither the input's nor the output's")
    if any(size is None for size in kernel):
        raise ValueError(f"the kernel of {equation!r} needs known dimensions, got input shape {tuple(input_shape)}")
    bias = None
    if bias_axes:
        unknown = [letter for letter in bias_axes if letter not in output_spec]
        if unknown:
            raise ValueError(f"bias_axes {bias_axes!r} has {unknown[0]!r}, not in the output of {equation!r}")
        first = min(output_spec.index(letter) for letter in bias_axes)
        bias = [full[output_axis[letter]] if letter in bias_axes else 1 for letter in output_spec[first:]]
        bias += [1] * (elided if right else 0)
    return EinsumShapes(
        kernel=tuple(kernel),
        bias=None if bias is None else tuple(bias),
        output=tuple(full),
        input_axes=tuple(axis for letter, axis in input_axis.items() if letter in kernel_spec),
        output_axes=tuple(axis for letter, axis in output_axis.items() if letter in kernel_spec),
        kernel_input_axes=tuple(kernel_inputs),
        kernel_output_axes=tuple(kernel_outputs),
    )


class BayesianEinsumDense(_linear.BayesianLinear):
    """Shared EinsumDense part: y = activation(einsum(equation, x, W) + b), W, b ~ q.

    Arguments are those of `keras.layers.EinsumDense` (equation,
    output_shape, bias_axes, activation, initializers) plus the Bayesian ones
    of the Dense layers. Flipout flips signs per example on the axes that
    index the kernel (the features, heads), shared along the others
    (sequence positions), which share the weights.
    """

    unrolls_samples = False  # _linear_per_sample adds a sample axis to the equation

    def __init__(self, equation, output_shape, activation=None, bias_axes=None, **kwargs):
        kwargs.pop("gptq_unpacked_column_size", None)  # a quantization detail of Keras's layer
        super().__init__(activation=activation, use_bias=bool(bias_axes), **kwargs)
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self.bias_axes = bias_axes or None
        _parse(equation)
        self._shapes = None

    def build(self, input_shape):
        self._shapes = einsum_shapes(self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape)
        initializer = self.kernel_initializer
        if isinstance(initializer, keras.initializers.VarianceScaling) and (
            initializer.input_axes is None or initializer.output_axes is None
        ):
            # Fans over the kernel's input and output axes, as keras.layers.EinsumDense.
            config = initializer.get_config()
            config.update(
                input_axes=list(self._shapes.kernel_input_axes), output_axes=list(self._shapes.kernel_output_axes)
            )
            initializer = type(initializer).from_config(config)
        self.kernel = self.add_posterior("kernel", self._shapes.kernel, initializer)
        if self._shapes.bias is not None:
            self.build_bias(self._shapes.bias)
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape))
        self.built = True

    def _linear(self, inputs, kernel, name="kernel"):
        return ops.einsum(self.equation, inputs, kernel)

    def _broadcastable_bias(self, bias):
        return bias

    def _flip_shape(self, shape, side="input"):
        axes = self._shapes.input_axes if side == "input" else self._shapes.output_axes
        return tuple(d if i == 0 or i in axes else 1 for i, d in enumerate(shape))

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        # One einsum over a new leading sample axis of inputs, kernels and outputs.
        sample = next(letter for letter in "zyxwvutsrqponmlkjihgfedcba" if letter not in self.equation)
        operands, output = self.equation.split("->")
        equation = ",".join(sample + operand for operand in operands.split(",")) + "->" + sample + output
        shape = ops.shape(inputs)
        blocks = ops.reshape(inputs, (num_samples, -1) + tuple(shape[1:]))
        outputs = ops.einsum(equation, blocks, kernels["kernel"])
        if biases is not None:
            extra = len(outputs.shape) - 1 - len(self._shapes.bias)
            outputs = outputs + ops.reshape(biases, (num_samples,) + (1,) * extra + self._shapes.bias)
        return ops.reshape(outputs, (-1,) + tuple(ops.shape(outputs)[2:]))

    def compute_output_shape(self, input_shape):
        return einsum_shapes(self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape).output

    def get_config(self):
        config = super().get_config()
        del config["use_bias"]  # bias_axes says it
        config.update(
            {"equation": self.equation, "output_shape": self.partial_output_shape, "bias_axes": self.bias_axes}
        )
        return config


_COMMON_DOC = """
    Args:
        equation, output_shape, activation, bias_axes, kernel_initializer,
        bias_initializer: as in `keras.layers.EinsumDense`.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    Example:

    >>> query = tfp_uq.layers.{name}("abc,cde->abde", output_shape=(None, 4, 16), bias_axes="de")
"""


@keras.saving.register_keras_serializable(package="tfp_uq")
class EinsumDenseReparameterization(_estimators.Reparameterization, BayesianEinsumDense):
    __doc__ = """EinsumDense layer whose kernel is drawn once per call (reparameterization).

    y = activation(einsum(equation, x, W) + b), W = loc + scale * eps, one draw
    per call shared by the batch (Blundell et al. 2015).
""" + _COMMON_DOC.format(name="EinsumDenseReparameterization")


@keras.saving.register_keras_serializable(package="tfp_uq")
class EinsumDenseFlipout(_estimators.Flipout, BayesianEinsumDense):
    __doc__ = """EinsumDense layer with Flipout: pseudo-independent kernels per example.

    y_n = activation(einsum(x_n, loc) + (einsum(x_n * s_n, dW) + db) * r_n + b),
    dW drawn once per call, s_n and r_n random signs per example on the
    kernel's input and output axes (Wen et al. 2018).
""" + _COMMON_DOC.format(name="EinsumDenseFlipout")
