"""The split-conformal quantile of calibration scores (Vovk et al. 2005; Lei et al. 2018)."""

import math

import numpy as np

from tfp_uq import _validation

__all__ = ["conformal_quantile", "conformal_rank", "minimum_calibration_size"]

# (n + 1) * coverage is computed in binary floating point, where 0.9 is not
# exact: 10 * 0.9 may land a hair above 9 and ceil would give 10.
_ROUNDING = 1e-9


def conformal_rank(num_calibration, coverage):
    """The rank k = ceil((n + 1) * coverage) of the conformal quantile among n scores.

    With exchangeable scores s_1, ..., s_n, s_{n+1}, the k-th smallest of the
    first n is at least s_{n+1} with probability at least k / (n + 1) >=
    coverage, and at most k / (n + 1) < coverage + 1 / (n + 1) when the
    scores have no ties.
    """
    return math.ceil((num_calibration + 1) * coverage - _ROUNDING)


def minimum_calibration_size(coverage):
    """The fewest calibration scores n with a finite conformal quantile: k <= n, i.e. n >= coverage / (1 - coverage).

    Example:

    >>> minimum_calibration_size(0.9), minimum_calibration_size(0.95)
    (9, 19)
    """
    return math.ceil(coverage / (1 - coverage) - _ROUNDING)


def conformal_quantile(scores, coverage):
    """The k-th smallest of n calibration scores, k = ceil((n + 1) * coverage).

    This is the empirical quantile at level k / n (NumPy's `method="lower"`),
    the rule of MAPIE's split conformal methods. Scores along the first axis;
    further axes (several targets) get one quantile each.

    Args:
        scores: array `(n, ...)` of calibration scores.
        coverage: the promised coverage 1 - alpha, in (0, 1).

    Returns:
        The quantile, a float or an array of the trailing shape.

    Raises:
        ValueError: if k > n (fewer than `minimum_calibration_size(coverage)`
            scores), where the quantile would be infinite.

    Example:

    >>> conformal_quantile([5.0, 1.0, 4.0, 2.0, 3.0], coverage=0.6)  # k = ceil(6 * 0.6) = 4
    4.0
    """
    coverage = _validation.open_unit_interval("coverage", coverage)
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be a finite array of shape (n, ...), got shape {scores.shape}")
    n = scores.shape[0]
    k = conformal_rank(n, coverage)
    if k > n:
        raise ValueError(
            f"scores: {n} calibration scores are too few for coverage={coverage!r}; it needs at least "
            f"{minimum_calibration_size(coverage)} (the ceil((n + 1) * coverage)-th smallest must exist)"
        )
    quantile = np.partition(scores, k - 1, axis=0)[k - 1]
    return float(quantile) if np.ndim(quantile) == 0 else quantile
