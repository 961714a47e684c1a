"""Metrics of prediction intervals and prediction sets: coverage, size, conditional coverage (NumPy).

Intervals are `lower`, `upper` arrays shaped like the targets `y` (every
element counts); sets are boolean masks `(n, num_classes)` with integer
`labels` `(n,)`. `group_coverage` and `size_stratified_coverage` take the
per-input booleans of `in_interval` / `in_set`.
"""

import numpy as np

from tfp_uq import _validation

__all__ = [
    "group_coverage",
    "in_interval",
    "in_set",
    "interval_coverage",
    "mean_set_size",
    "mean_width",
    "set_coverage",
    "size_stratified_coverage",
]


def _numbers(name, value):
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {error}") from None
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} must not contain NaN")
    return array


def _interval(lower, upper, shape=None):
    lower, upper = _numbers("lower", lower), _numbers("upper", upper)
    if lower.shape != upper.shape or (shape is not None and lower.shape != shape):
        raise ValueError(
            f"lower and upper must have one shape{'' if shape is None else f' {shape} (that of y)'}, got "
            f"{lower.shape} and {upper.shape}"
        )
    return lower, upper


def _sets(prediction_set):
    prediction_set = np.asarray(prediction_set)
    if prediction_set.ndim != 2 or prediction_set.dtype != bool:
        raise ValueError(
            "prediction_set must be a boolean mask of shape (num_examples, num_classes), got "
            f"{prediction_set.dtype} of shape {prediction_set.shape}"
        )
    return prediction_set


def in_interval(y, lower, upper):
    """Whether each target lies in its closed interval [lower, upper] (booleans shaped like y)."""
    y = _numbers("y", y)
    lower, upper = _numbers("lower", lower), _numbers("upper", upper)
    if y.shape != lower.shape and y.size == lower.size:
        y = y.reshape(lower.shape)
    lower, upper = _interval(lower, upper, y.shape)
    return (lower <= y) & (y <= upper)


def in_set(prediction_set, labels):
    """Whether each label is in its prediction set (booleans `(n,)`)."""
    prediction_set = _sets(prediction_set)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (len(prediction_set),):
        raise ValueError(f"labels must have shape ({len(prediction_set)},) to match prediction_set, got {labels.shape}")
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= prediction_set.shape[1]):
        raise ValueError(f"labels must be integer classes in [0, {prediction_set.shape[1] - 1}]")
    return prediction_set[np.arange(len(labels)), labels]


def interval_coverage(y, lower, upper):
    """The fraction of targets inside their intervals: the empirical coverage.

    Example:

    >>> interval_coverage([0.0, 2.0], lower=[-1.0, -1.0], upper=[1.0, 1.0])
    0.5
    """
    return float(np.mean(in_interval(y, lower, upper)))


def set_coverage(prediction_set, labels):
    """The fraction of labels inside their prediction sets: the empirical coverage."""
    return float(np.mean(in_set(prediction_set, labels)))


def mean_width(lower, upper):
    """The mean width upper - lower of the intervals (inf if one is unbounded)."""
    lower, upper = _interval(lower, upper)
    return float(np.mean(upper - lower))


def mean_set_size(prediction_set):
    """The mean number of classes in the prediction sets."""
    return float(np.mean(np.sum(_sets(prediction_set), axis=1)))


def _covered(covered):
    covered = np.asarray(covered).reshape(-1)
    if covered.dtype != bool:
        raise ValueError(f"covered must be booleans (from in_interval or in_set), got {covered.dtype}")
    return covered


def group_coverage(covered, groups):
    """Coverage within each group (conditional coverage, e.g. per class or per hospital).

    Args:
        covered: booleans per input (`in_interval`, `in_set`).
        groups: a label per input.

    Returns:
        dict with "group" (the sorted labels), "coverage" and "count" per group.
    """
    covered = _covered(covered)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != covered.shape:
        raise ValueError(f"groups must hold one label per input, shape {covered.shape}, got {groups.shape}")
    labels, index = np.unique(groups, return_inverse=True)
    count = np.bincount(index, minlength=len(labels))
    hits = np.bincount(index, weights=covered, minlength=len(labels))
    return {"group": labels, "coverage": hits / count, "count": count}


def size_stratified_coverage(covered, sizes, num_bins=None):
    """Coverage among inputs of similar interval width or set size (Angelopoulos et al. 2021).

    A method whose coverage holds only on average can under-cover its small
    sets (the confident inputs) and over-cover its large ones; this shows it.

    Args:
        covered: booleans per input (`in_interval`, `in_set`).
        sizes: set sizes or interval widths per input.
        num_bins: None: one stratum per distinct size (set sizes); an
            integer: that many strata of (as near as possible) equally many
            inputs, by size rank (interval widths).

    Returns:
        dict with "lower" and "upper" (the smallest and largest size in each
        stratum), "coverage" and "count" per stratum, by increasing size.
    """
    covered = _covered(covered)
    sizes = _numbers("sizes", sizes).reshape(-1)
    if sizes.shape != covered.shape:
        raise ValueError(f"sizes must hold one size per input, shape {covered.shape}, got {sizes.shape}")
    if num_bins is None:
        _, strata = np.unique(sizes, return_inverse=True)
    else:
        num_bins = min(_validation.positive_int("num_bins", num_bins), len(sizes))
        order = np.argsort(sizes, kind="stable")
        strata = np.empty(len(sizes), dtype="int64")
        strata[order] = np.arange(len(sizes)) * num_bins // len(sizes)
    count = np.bincount(strata)
    keep = count > 0
    hits = np.bincount(strata, weights=covered)
    lower = np.array([sizes[strata == s].min() if c else np.nan for s, c in enumerate(count)])
    upper = np.array([sizes[strata == s].max() if c else np.nan for s, c in enumerate(count)])
    return {"lower": lower[keep], "upper": upper[keep], "coverage": hits[keep] / count[keep], "count": count[keep]}
