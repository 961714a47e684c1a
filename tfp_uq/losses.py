"""Losses for models that predict distributions."""

import math

import keras
from keras import ops

from tfp_uq import _validation
from tfp_uq.layers.heads import split_gaussian

__all__ = ["GaussianNLL"]


@keras.saving.register_keras_serializable(package="tfp_uq")
class GaussianNLL(keras.losses.Loss):
    """Negative log-likelihood of targets under a `GaussianHead`'s output.

    -log N(y; loc, scale^2) = 0.5 ((y - loc) / scale)^2 + log scale
    + 0.5 log(2 pi), averaged over targets (the last axis).

    With `beta > 0` each example's term is multiplied by
    `stop_gradient(scale^2)^beta` (beta-NLL, Seitzer et al. 2022). The plain
    NLL lets a network explain hard examples as noise instead of fitting
    their mean, because their gradients are divided by scale^2; beta = 0.5
    undoes half of that and usually fits the mean better with equal or better
    test likelihood; beta = 1 gives the mean the gradients of squared error.
    The reported loss is then no longer the NLL: score with
    `tfp_uq.metrics` on predictions.

    Args:
        beta: float in [0, 1]; 0 (default) is the exact NLL.
        name, reduction, dtype: as for `keras.losses.Loss`.

    Example:

    >>> model.compile("adam", loss=tfp_uq.losses.GaussianNLL())
    >>> model.compile("adam", loss=tfp_uq.losses.GaussianNLL(beta=0.5))
    """

    def __init__(self, beta=0.0, name="gaussian_nll", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = _validation.closed_unit_interval("beta", beta)

    def call(self, y_true, y_pred):
        loc, scale = split_gaussian(y_pred)
        y_true = ops.cast(ops.reshape(y_true, ops.shape(loc)), loc.dtype)
        z = (y_true - loc) / scale
        nll = 0.5 * ops.square(z) + ops.log(scale) + 0.5 * math.log(2 * math.pi)
        if self.beta:
            nll = nll * ops.stop_gradient(ops.square(scale)) ** self.beta
        return ops.mean(nll, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["beta"] = self.beta
        return config
