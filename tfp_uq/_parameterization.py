"""How a positive scale is stored: an unconstrained raw value and its map to the scale.

Every posterior standard deviation of a Bayesian layer, a hierarchical
prior's learned scale and a `GaussianHead`'s noise scale is
`softplus(raw) + SCALE_FLOOR`: smooth, positive, never below the floor, and
linear in `raw` for large scales. `raw_scale` inverts it for initialisers.
"""

import numpy as np
from keras import ops

__all__ = ["SCALE_FLOOR", "positive_scale", "raw_scale", "softplus_inverse"]

# Positive scales are softplus(raw) + SCALE_FLOOR, so they never reach zero.
SCALE_FLOOR = 1e-6


def softplus_inverse(value):
    """Returns `raw` with `softplus(raw) == value` (a NumPy float or array)."""
    value = np.asarray(value, dtype="float64")
    return value + np.log(-np.expm1(-value))


def positive_scale(raw):
    """Maps an unconstrained tensor to a positive scale: softplus with a floor."""
    return ops.softplus(raw) + SCALE_FLOOR


def raw_scale(scale):
    """The raw value whose `positive_scale` is `scale` (> SCALE_FLOOR), as NumPy float64."""
    return softplus_inverse(np.asarray(scale, dtype="float64") - SCALE_FLOOR)
