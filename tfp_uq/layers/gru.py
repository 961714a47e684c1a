"""Bayesian drop-in replacements for `keras.layers.GRU`, weights drawn once per sequence."""

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers import _estimators, _recurrent

__all__ = ["BayesianGRU", "GRUFlipout", "GRUReparameterization"]


class BayesianGRU(_recurrent.BayesianRecurrent):
    """Shared GRU part: Keras's gates (Cho et al. 2014) with weights W, U, b ~ q.

    (x_z, x_r, x_h) = x_t @ W + b_in, z = sigmoid(x_z + h U_z), r =
    sigmoid(x_r + h U_r), candidate tanh(x_h + r * (h U_h + b_rec)) with
    `reset_after=True` (the default; the bias then has shape (2, 3 units) as
    in Keras) or tanh(x_h + (r * h) U_h), and h_t = z h_{t-1} + (1 - z)
    candidate. Arguments are those of `keras.layers.GRU` plus the Bayesian ones.
    """

    gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = _validation.boolean("reset_after", reset_after)

    def _state_size(self):
        return self.units

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _split_bias(self, bias):
        if bias is None or not self.reset_after:
            return bias, None
        return bias[..., 0, :], bias[..., 1, :]

    def _step(self, recurrent, inputs, states):
        h = states[0] if isinstance(states, (list, tuple)) else states
        units = self.units
        x_z, x_r, x_h = ops.split(inputs, 3, axis=-1)
        if self.reset_after:
            r_z, r_r, r_h = ops.split(recurrent(h), 3, axis=-1)
        else:
            r_z, r_r = ops.split(recurrent(h, 0, 2 * units), 2, axis=-1)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        if self.reset_after:
            candidate = self.activation(x_h + r * r_h)
        else:
            candidate = self.activation(x_h + recurrent(r * h, 2 * units, 3 * units))
        h = z * h + (1 - z) * candidate
        return h, [h]

    def get_config(self):
        config = super().get_config()
        config["reset_after"] = self.reset_after
        return config


_COMMON_DOC = """
    Args:
        units, activation, recurrent_activation, use_bias,
        kernel_initializer, recurrent_initializer, bias_initializer,
        reset_after, return_sequences, return_state, go_backwards, stateful,
        unroll, zero_output_for_mask: as in `keras.layers.GRU`.
        dropout, recurrent_dropout: only 0; a `ValueError` names the
            alternative (`tfp_uq.layers.MCDropout` on the inputs).
        use_cudnn: "auto" or False.
        bayesian_bias, prior, posterior_scale_init, kl_weight, seed,
        deterministic: as in `tfp_uq.layers.DenseFlipout`.

    With `deterministic=True` (or posterior scales near zero) the layer
    computes what `keras.layers.GRU` with the posterior means does.

    Example:

    >>> layer = tfp_uq.layers.{name}(32, return_sequences=True)
"""


@keras.saving.register_keras_serializable(package="tfp_uq")
class GRUReparameterization(_estimators.RecurrentReparameterization, BayesianGRU):
    __doc__ = """GRU whose weights are drawn once per sequence (reparameterization).

    W, U, b = loc + scale * eps, one draw per call shared by the batch and by
    every time step (Blundell et al. 2015; Fortunato et al. 2017).
""" + _COMMON_DOC.format(name="GRUReparameterization")


@keras.saving.register_keras_serializable(package="tfp_uq")
class GRUFlipout(_estimators.RecurrentFlipout, BayesianGRU):
    __doc__ = """GRU with Flipout: pseudo-independent weights per example, fixed along each sequence.

    Example n uses W_n = loc + dW * (s_n r_n^T) (and likewise U_n, b_n) at
    every step, dW drawn once per call and the signs once per example and
    sequence (Wen et al. 2018).
""" + _COMMON_DOC.format(name="GRUFlipout")
