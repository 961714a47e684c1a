"""Regression metrics for Gaussian predictive distributions (NumPy).

Each takes targets `y`, predictive means `mean` and standard deviations
`std` of one shape (any shape; all elements count).
"""

import math

import numpy as np
from scipy import special

from tfp_uq import _validation

__all__ = [
    "rmse",
    "gaussian_nll",
    "crps_gaussian",
    "picp",
    "mean_interval_width",
    "calibration_curve",
    "miscalibration_area",
    "mixture_log_likelihood",
]


def _finite(name, value):
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {error}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return array


def _arrays(y, mean, std=None):
    y, mean = _finite("y", y), _finite("mean", mean)
    if y.shape != mean.shape:
        if y.size == mean.size:
            y = y.reshape(mean.shape)
        else:
            raise ValueError(f"y and mean must have the same shape, got {y.shape} and {mean.shape}")
    if std is None:
        return y, mean
    std = _finite("std", std)
    if std.shape != mean.shape:
        raise ValueError(f"std must have the shape of mean {mean.shape}, got {std.shape}")
    if np.any(std <= 0):
        raise ValueError("std must be finite and > 0")
    return y, mean, std


def _level(level):
    return _validation.open_unit_interval("level", level)


def rmse(y, mean):
    """Root mean squared error."""
    y, mean = _arrays(y, mean)
    return float(np.sqrt(np.mean((y - mean) ** 2)))


def gaussian_nll(y, mean, std):
    """Mean -log N(y; mean, std^2) in nats."""
    y, mean, std = _arrays(y, mean, std)
    z = (y - mean) / std
    return float(np.mean(0.5 * z**2 + np.log(std) + 0.5 * math.log(2 * math.pi)))


def crps_gaussian(y, mean, std):
    """Mean continuous ranked probability score of Gaussian predictions.

    Closed form (Gneiting & Raftery 2007): with z = (y - mean) / std,
    CRPS = std [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]. Same units as y;
    lower is better.
    """
    y, mean, std = _arrays(y, mean, std)
    z = (y - mean) / std
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return float(np.mean(std * (z * (2 * special.ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))))


def _half_width(std, level):
    return special.ndtri(0.5 + level / 2) * std


def picp(y, mean, std, level=0.95):
    """Prediction interval coverage probability of the central `level` interval.

    The fraction of targets inside mean +- z std with z the (1 + level) / 2
    Normal quantile; a calibrated model gives about `level`.
    """
    y, mean, std = _arrays(y, mean, std)
    return float(np.mean(np.abs(y - mean) <= _half_width(std, _level(level))))


def mean_interval_width(std, level=0.95):
    """Mean width 2 z std of the central `level` intervals."""
    std = np.asarray(std, dtype="float64")
    if np.any(std <= 0):
        raise ValueError("std must be > 0")
    return float(np.mean(2 * _half_width(std, _level(level))))


def calibration_curve(y, mean, std, num_levels=99):
    """Expected vs observed quantile levels (Kuleshov et al. 2018).

    For levels p in (0, 1), the observed frequency of F(y) <= p, where F is
    each prediction's CDF. A calibrated model lies on the diagonal.

    Returns:
        (expected, observed): arrays of `num_levels` levels.
    """
    y, mean, std = _arrays(y, mean, std)
    num_levels = _validation.positive_int("num_levels", num_levels)
    pit = special.ndtr((y - mean) / std).ravel()
    expected = np.arange(1, num_levels + 1) / (num_levels + 1)
    observed = np.mean(pit[None, :] <= expected[:, None], axis=1)
    return expected, observed


def miscalibration_area(y, mean, std, num_levels=99):
    """Area between the calibration curve and the diagonal (0 is perfect).

    The mean of |observed - expected| over `num_levels` evenly spaced
    levels, which approximates the integral over [0, 1].
    """
    expected, observed = calibration_curve(y, mean, std, num_levels)
    return float(np.mean(np.abs(observed - expected)))


def mixture_log_likelihood(y, locs, scales):
    """Mean log-density of y under an equal-weight mixture of Gaussians.

    log p(y) = logsumexp_s log N(y; locs[s], scales[s]^2) - log S, the test
    log-likelihood of a Monte Carlo predictive (Gal & Ghahramani 2016), in
    the units of y; higher is better.

    Args:
        y: targets, shape (n, ...).
        locs, scales: mixture components, shape (S, n, ...).
    """
    locs = np.asarray(locs, dtype="float64")
    scales = np.asarray(scales, dtype="float64")
    y = np.asarray(y, dtype="float64").reshape(locs.shape[1:])
    if scales.shape != locs.shape or np.any(scales <= 0):
        raise ValueError("scales must be > 0 with the shape of locs (num_samples, n, ...)")
    z = (y[None] - locs) / scales
    log_densities = -0.5 * z**2 - np.log(scales) - 0.5 * math.log(2 * math.pi)
    return float(np.mean(special.logsumexp(log_densities, axis=0) - math.log(locs.shape[0])))
