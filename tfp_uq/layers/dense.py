"""Bayesian drop-in replacements for `keras.layers.Dense`."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _linear

__all__ = ["BayesianDense", "DenseReparameterization", "DenseFlipout", "DenseLocalReparameterization"]


class BayesianDense(_linear.BayesianLinear):
    """Shared Dense part: y = activation(x @ W + b) with W, b ~ q.

    Input shape: `(batch_size, ..., input_dim)`; output shape:
    `(batch_size, ..., units)`, as `keras.layers.Dense`.
    """

    unrolls_samples = False  # _linear_per_sample batches the samples

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = _validation.positive_int("units", units)
        self.supports_masking = True  # a mask passes through, as keras.layers.Dense

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"{type(self).__name__} needs inputs of rank >= 2 (batch, ..., "
                f"features), got shape {tuple(input_shape)}"
            )
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs a known last input dimension, got shape {tuple(input_shape)}"
            )
        self.build_kernel_and_bias((input_dim, self.units), (self.units,))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})
        self.built = True

    def _input_channels(self, kernel_shape):
        return kernel_shape[-2]

    def _linear(self, inputs, kernel, name="kernel"):
        return ops.matmul(inputs, kernel)

    def _broadcastable_bias(self, bias):
        return bias

    def _linear_per_sample(self, inputs, kernels, biases, num_samples):
        shape = ops.shape(inputs)
        blocks = ops.reshape(inputs, (num_samples, -1, shape[-1]))
        outputs = ops.matmul(blocks, kernels["kernel"])
        if biases is not None:
            outputs = outputs + biases[:, None, :]
        return ops.reshape(outputs, tuple(shape[:-1]) + (self.units,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


_COMMON_DOC = """
    Args:
        units: dimensionality of the output space (positive integer).
        activation: activation function (default: none, linear).
        use_bias: whether the layer adds a bias.
        kernel_initializer: initializer of the kernel's posterior mean.
        bias_initializer: initializer of the bias's posterior mean.
        bayesian_bias: if True (default) the bias has a posterior and prior;
            if False it is an ordinary point-estimate weight.
        prior: a `tfp_uq.priors.Prior`, a `tfp.distributions.Distribution`,
            or None for N(0, 1).
        posterior_scale_init: None (default): the posterior precision is the
            prior's plus N * (running mean square of the weight's input) *
            a learned curvature, so weights of inputs that are always zero
            keep the prior and scales follow 1 / sqrt(N); a number: scale =
            softplus(rho) + floor starting at that standard deviation (the
            parameterisation of models saved before).
        kl_weight: weight of the KL term, normally 1 / number of training
            examples (or use `tfp_uq.set_kl_weight(model, num_examples=N)`).
        seed: integer seed for the layer's random draws.
        deterministic: if True, use the posterior mean (no sampling).

    `keras.layers.Dense`'s regularizers and constraints are not taken (a
    `ValueError` says so): the prior's KL term is the weights' regulariser.
"""


@keras.saving.register_keras_serializable(package="tfp_uq")
class DenseReparameterization(_estimators.Reparameterization, BayesianDense):
    __doc__ = (
        """Dense layer whose weights are drawn once per call (reparameterization).

    y = activation(x @ W + b), W = loc + scale * eps, eps ~ N(0, I), one draw
    per call shared by the batch (Blundell et al. 2015, "Weight Uncertainty
    in Neural Networks").
"""
        + _COMMON_DOC
        + """
    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     tfp_uq.layers.DenseReparameterization(32, activation="relu"),
    ...     tfp_uq.layers.DenseReparameterization(1),
    ... ])
    >>> tfp_uq.set_kl_weight(model, num_examples=1000)
"""
    )


@keras.saving.register_keras_serializable(package="tfp_uq")
class DenseFlipout(_estimators.Flipout, BayesianDense):
    __doc__ = (
        """Dense layer with Flipout: pseudo-independent weights per example.

    y_n = activation(x_n @ loc + ((x_n * s_n) @ dW + db) * r_n + b_loc), with
    dW = scale * eps drawn once per call and s_n, r_n random signs per
    example (Wen et al. 2018, "Flipout"). Lower-variance gradients than
    reparameterization for about twice the matrix products.
"""
        + _COMMON_DOC
        + """
    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((64,)),
    ...     tfp_uq.layers.DenseFlipout(128, activation="relu"),
    ...     tfp_uq.layers.DenseFlipout(10, activation="softmax"),
    ... ])
"""
    )


@keras.saving.register_keras_serializable(package="tfp_uq")
class DenseLocalReparameterization(_estimators.LocalReparameterization, BayesianDense):
    __doc__ = (
        """Dense layer that samples pre-activations (local reparameterization).

    y = activation(x @ loc + b + sqrt(x^2 @ scale^2 + scale_b^2) * eps), eps
    drawn per example and unit (Kingma, Salimans & Welling 2015). Exact for
    the marginal of each pre-activation and cheapest in noise per example.
"""
        + _COMMON_DOC
        + """
    Example:

    >>> layer = tfp_uq.layers.DenseLocalReparameterization(16, activation="relu")
"""
    )
