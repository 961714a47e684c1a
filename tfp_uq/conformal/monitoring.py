"""Is the promised coverage kept? Rolling coverage with an exact test, for labels that arrive later."""

import numpy as np
from scipy import special

from tfp_uq import _validation
from tfp_uq.conformal import quantile as _quantile

__all__ = ["ALTERNATIVES", "rolling_coverage"]

ALTERNATIVES = ("less", "two-sided")
# Relative slack when comparing probabilities for the two-sided test (as scipy's binomtest).
_RELATIVE_SLACK = 1 + 1e-7


def _covered(covered):
    covered = np.asarray(covered)
    if covered.ndim != 1 or covered.size == 0:
        raise ValueError(f"covered must be a non-empty 1-D array of booleans, got shape {covered.shape}")
    if covered.dtype != bool and not np.all((covered == 0) | (covered == 1)):
        raise ValueError("covered must hold booleans (or 0 / 1): whether each target fell in its interval or set")
    return covered.astype("int64")


def rolling_coverage(covered, coverage, window, num_calibration=None, alternative="less"):
    """The coverage of each window of `window` consecutive inputs, and a test against the promised level.

    Under exchangeability, the number of covered targets among m new inputs
    is Binomial(m, coverage) if each is covered with probability
    `coverage`. For split conformal sets it is exactly
    BetaBinomial(m, k, n + 1 - k), k = ceil((n + 1) * coverage), given n
    calibration points (the coverage conditional on the calibration set is
    Beta(k, n + 1 - k); Vovk 2012): pass `num_calibration` to test against
    that law, which is wider, so that a window is not flagged for the luck
    of the calibration draw. A small p-value says the promise is broken:
    the data drifted away from the calibration data.

    Args:
        covered: booleans in arrival order: whether each target fell in its
            interval or set (e.g. `tfp_uq.metrics.in_interval(y, lower, upper)`).
        coverage: the promised coverage, in (0, 1).
        window: inputs per window (positive integer, at most `len(covered)`).
        num_calibration: the calibrator's number of calibration points (per
            group, for a Mondrian one), or None for the binomial law.
        alternative: "less" (default: the p-value of so few covered, the
            alarm for a broken promise) or "two-sided" (also flags sets or
            intervals that became too wide).

    Returns:
        dict with "coverage" (fraction covered in each window ending at
        inputs window - 1, ..., len(covered) - 1) and "p_value" (the test
        of each window), arrays of length len(covered) - window + 1.

    Example:

    >>> report = tfp_uq.conformal.rolling_coverage(covered, 0.9, window=200, num_calibration=1000)
    >>> alarm = report["p_value"] < 0.01
    """
    covered = _covered(covered)
    coverage = _validation.open_unit_interval("coverage", coverage)
    window = _validation.positive_int("window", window)
    if window > covered.size:
        raise ValueError(f"window must be at most len(covered) = {covered.size}, got {window}")
    _validation.one_of("alternative", alternative, ALTERNATIVES)
    counts = np.convolve(covered, np.ones(window, dtype="int64"), mode="valid")
    if num_calibration is None:
        pmf = _binomial_pmf(window, coverage)
    else:
        num_calibration = _validation.positive_int("num_calibration", num_calibration)
        k = _quantile.conformal_rank(num_calibration, coverage)
        if k > num_calibration:
            raise ValueError(
                f"num_calibration={num_calibration} is too few for coverage={coverage!r}; a calibrator needs at "
                f"least {_quantile.minimum_calibration_size(coverage)}"
            )
        pmf = _beta_binomial_pmf(window, k, num_calibration + 1 - k)
    if alternative == "less":
        p_values = np.cumsum(pmf)
    else:
        p_values = np.array([pmf[pmf <= p * _RELATIVE_SLACK].sum() for p in pmf])
    return {"coverage": counts / window, "p_value": np.minimum(p_values[counts], 1.0)}


def _log_choose(m, x):
    return special.gammaln(m + 1) - special.gammaln(x + 1) - special.gammaln(m - x + 1)


def _binomial_pmf(m, p):
    """P(X = 0..m) of Binomial(m, p), from logarithms (scipy's frozen laws cost ~10 ms a call)."""
    x = np.arange(m + 1)
    return np.exp(_log_choose(m, x) + special.xlogy(x, p) + special.xlog1py(m - x, -p))


def _beta_binomial_pmf(m, a, b):
    """P(X = 0..m) of BetaBinomial(m, a, b) = C(m, x) B(x + a, m - x + b) / B(a, b)."""
    x = np.arange(m + 1)
    return np.exp(_log_choose(m, x) + special.betaln(x + a, m - x + b) - special.betaln(a, b))
