"""Output heads that make a model predict a distribution."""

import keras
from keras import ops

from tfp_uq import _parameterization

__all__ = ["GaussianHead", "split_gaussian"]


@keras.saving.register_keras_serializable(package="tfp_uq")
class GaussianHead(keras.layers.Layer):
    """Turns 2k raw outputs into the loc and scale of k Gaussians.

    The first half of the last axis is the mean, the second half goes
    through softplus (plus a floor) to a positive standard deviation. The
    output keeps the layout `[loc_1..loc_k, scale_1..scale_k]`, which
    `tfp_uq.losses.GaussianNLL` and `tfp_uq.predict` read, so the model
    learns its aleatoric (data) noise.

    Input shape: `(batch_size, ..., 2k)`; output shape: the same.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     tfp_uq.layers.DenseFlipout(50, activation="relu"),
    ...     tfp_uq.layers.DenseFlipout(2),      # 2 x 1 target
    ...     tfp_uq.layers.GaussianHead(),
    ... ])
    >>> model.compile("adam", tfp_uq.losses.GaussianNLL())
    """

    def build(self, input_shape):
        size = input_shape[-1]
        if size is None or size % 2:
            raise ValueError(
                "GaussianHead needs an even, known last input dimension (loc and "
                f"scale for each target), got shape {tuple(input_shape)}"
            )
        self.built = True

    def call(self, inputs):
        loc, raw_scale = ops.split(inputs, 2, axis=-1)
        scale = _parameterization.positive_scale(ops.cast(raw_scale, "float32"))
        return ops.concatenate([loc, ops.cast(scale, loc.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


def split_gaussian(outputs):
    """Splits GaussianHead outputs into (loc, scale)."""
    return ops.split(outputs, 2, axis=-1)
