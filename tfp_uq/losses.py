"""Losses for models that predict distributions."""

import math

import keras
from keras import ops

from tfp_uq.layers.heads import split_gaussian


@keras.saving.register_keras_serializable(package="tfp_uq")
class GaussianNLL(keras.losses.Loss):
    """Negative log-likelihood of targets under a `GaussianHead`'s output.

    -log N(y; loc, scale^2) = 0.5 ((y - loc) / scale)^2 + log scale
    + 0.5 log(2 pi), averaged over targets (the last axis).

    Example:

    >>> model.compile("adam", loss=tfp_uq.losses.GaussianNLL())
    """

    def __init__(self, name="gaussian_nll", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        loc, scale = split_gaussian(y_pred)
        y_true = ops.cast(ops.reshape(y_true, ops.shape(loc)), loc.dtype)
        z = (y_true - loc) / scale
        return ops.mean(0.5 * ops.square(z) + ops.log(scale) + 0.5 * math.log(2 * math.pi), axis=-1)
