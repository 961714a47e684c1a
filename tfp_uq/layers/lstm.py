"""Bayesian drop-in replacements for `keras.layers.LSTM`, weights drawn once per sequence."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _recurrent

__all__ = ["BayesianLSTM", "LSTMFlipout", "LSTMReparameterization"]


class BayesianLSTM(_recurrent.BayesianRecurrent):
    """Shared LSTM part: Keras's gates (Hochreiter & Schmidhuber 1997) with weights W, U, b ~ q.

    z = x_t @ W + h_{t-1} @ U + b, split into (i, f, g, o) as in
    `keras.layers.LSTM`: c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),
    h_t = sigmoid(o) tanh(c_t). Arguments are those of `keras.layers.LSTM`
    (with `unit_forget_bias`) plus the Bayesian ones.
    """

    gates = 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = _validation.boolean("unit_forget_bias", unit_forget_bias)

    def _state_size(self):
        return [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, initializer = self.units, self.bias_initializer

        def forget_gate_ones(shape, dtype=None):
            # The forget gate's bias starts at 1 (Jozefowicz et al. 2015), as in keras.layers.LSTM.
            return ops.concatenate(
                [initializer((units,), dtype), ops.ones((units,), dtype), initializer((2 * units,), dtype)]
            )

        return forget_gate_ones

    def _step(self, recurrent, inputs, states):
        h, c = states
        i, f, g, o = ops.split(inputs + recurrent(h), 4, axis=-1)
        c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
        h = self.recurrent_activation(o) * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


_COMMON_DOC = """
    Args:
        units, activation, recurrent_activation, use_bias,
        kernel_initializer, recurrent_initializer, bias_initializer,
        unit_forget_bias, return_sequences, return_state, go_backwards,
        stateful, unroll, zero_output_for_mask: as in `keras.layers.LSTM`.
        dropout, recurrent_dropout: only 0; a `ValueError` names the
            alternative (`tfp_uq.layers.MCDropout` on the inputs).
        use_cudnn: "auto" or False.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    With `deterministic=True` (or posterior scales near zero) the layer
    computes what `keras.layers.LSTM` with the posterior means does.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((30, 4)),
    ...     keras.layers.Masking(),
    ...     tfp_uq.layers.{name}(32),
    ...     tfp_uq.layers.DenseFlipout(1),
    ... ])
"""


@keras.saving.register_keras_serializable(package="tfp_uq")
class LSTMReparameterization(_estimators.RecurrentReparameterization, BayesianLSTM):
    __doc__ = """LSTM whose weights are drawn once per sequence (reparameterization).

    W, U, b = loc + scale * eps, one draw per call shared by the batch and by
    every time step (Blundell et al. 2015; Fortunato et al. 2017).
""" + _COMMON_DOC.format(name="LSTMReparameterization")


@keras.saving.register_keras_serializable(package="tfp_uq")
class LSTMFlipout(_estimators.RecurrentFlipout, BayesianLSTM):
    __doc__ = """LSTM with Flipout: pseudo-independent weights per example, fixed along each sequence.

    Example n uses W_n = loc + dW * (s_n r_n^T) (and likewise U_n, b_n) at
    every step, dW drawn once per call and the signs once per example and
    sequence (Wen et al. 2018): about twice the matrix products of
    `LSTMReparameterization`, for lower-variance gradients.
""" + _COMMON_DOC.format(name="LSTMFlipout")
