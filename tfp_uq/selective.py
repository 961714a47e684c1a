"""Selective prediction: answer when sure, refer to a person otherwise."""

import numpy as np

from tfp_uq import _validation

__all__ = ["risk_coverage_curve", "area_under_risk_coverage", "selection_threshold", "should_refer"]


def _scores_and_losses(uncertainty, losses):
    uncertainty = np.asarray(uncertainty, dtype="float64").ravel()
    losses = np.asarray(losses, dtype="float64").ravel()
    if uncertainty.shape != losses.shape or uncertainty.size == 0:
        raise ValueError(
            f"uncertainty and losses must be non-empty and of one length, got {uncertainty.shape} and {losses.shape}"
        )
    if not np.all(np.isfinite(losses)):
        raise ValueError("losses must be finite")
    # Fail safe: an input whose uncertainty is NaN is the least certain of all, answered last.
    return np.where(np.isnan(uncertainty), np.inf, uncertainty), losses


def risk_coverage_curve(uncertainty, losses):
    """Risk of answering only the most certain inputs, for each coverage.

    Inputs are sorted by increasing uncertainty; answering the first k gives
    coverage k / n and risk = mean loss of those k (for 0/1 losses, the
    error rate). A NaN uncertainty (a prediction that failed) counts as
    infinitely uncertain: it is answered last.

    Args:
        uncertainty: a score per input, larger = less sure.
        losses: the loss per input (e.g. 1 for an error, 0 otherwise).

    Returns:
        (coverage, risk, thresholds): arrays of length n; answering inputs
        with uncertainty <= thresholds[k - 1] gives coverage[k - 1].
    """
    uncertainty, losses = _scores_and_losses(uncertainty, losses)
    order = np.argsort(uncertainty, kind="mergesort")
    counts = np.arange(1, len(order) + 1)
    return counts / len(order), np.cumsum(losses[order]) / counts, uncertainty[order]


def area_under_risk_coverage(uncertainty, losses):
    """Mean risk over all coverages (AURC; Geifman et al. 2019). Lower is better."""
    return float(np.mean(risk_coverage_curve(uncertainty, losses)[1]))


def selection_threshold(uncertainty, losses, target_coverage=None, target_risk=None):
    """Picks an uncertainty threshold on validation data.

    Give one target: `target_coverage` in (0, 1] answers at least that
    fraction; `target_risk` >= 0 answers as many inputs as possible with
    risk at most that.

    Returns:
        The threshold: answer inputs whose uncertainty is <= it, refer the
        rest (see `should_refer`). -inf when no coverage meets the risk.
    """
    if (target_coverage is None) == (target_risk is None):
        raise ValueError("give exactly one of target_coverage and target_risk")
    coverage, risk, thresholds = risk_coverage_curve(uncertainty, losses)
    if target_coverage is not None:
        target_coverage = _validation.real("target_coverage", target_coverage)
        if not 0 < target_coverage <= 1:
            raise ValueError(f"target_coverage must be in (0, 1], got {target_coverage}")
        index = int(np.searchsorted(coverage, target_coverage - 1e-12))
        return float(thresholds[index])
    target_risk = _validation.non_negative("target_risk", target_risk)
    # Only thresholds that do not split a tie are usable.
    usable = np.append(thresholds[1:] != thresholds[:-1], True) & (risk <= target_risk)
    if not usable.any():
        return float("-inf")
    return float(thresholds[np.flatnonzero(usable)[-1]])


def should_refer(uncertainty, threshold):
    """True for inputs to refer to a person: uncertainty above `threshold`, or NaN (fail safe)."""
    return ~(np.asarray(uncertainty, dtype="float64") <= _validation.real("threshold", threshold))
