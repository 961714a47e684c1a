"""Classification metrics on predicted probabilities (NumPy functions).

Each takes `probs` of shape (num_examples, num_classes), rows summing to 1,
or a binary classifier's probability of class 1, shaped (num_examples,) or
(num_examples, 1), and `labels`: integers of shape (num_examples,) or one-hot.
"""

import numpy as np

from tfp_uq.metrics import _checks

__all__ = [
    "accuracy",
    "negative_log_likelihood",
    "brier_score",
    "reliability_table",
    "expected_calibration_error",
    "equal_mass_calibration_error",
    "maximum_calibration_error",
    "classwise_calibration_error",
]


_EPS = 1e-12


def accuracy(probs, labels):
    """Fraction of examples whose most probable class is the label."""
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def negative_log_likelihood(probs, labels):
    """Mean of -log p(label) in nats (probabilities clipped at 1e-12).

    Example:

    >>> negative_log_likelihood([[0.5, 0.5]], [0])  # log 2
    0.6931...
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    picked = probs[np.arange(len(labels)), labels]
    return float(np.mean(-np.log(np.maximum(picked, _EPS))))


def brier_score(probs, labels):
    """Mean over examples of sum_k (p_k - 1[y = k])^2 (range [0, 2]).

    This is the original multi-class Brier score (Brier 1950), summed over
    classes, not averaged over them.
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def _equal_width_bins(confidence, num_bins):
    # Bins (i/B, (i+1)/B]; a confidence of 0 falls in the first bin.
    return np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)


def _equal_mass_bins(confidence, num_bins):
    # Bins holding (as near as possible) equally many examples, by rank.
    order = np.argsort(confidence, kind="stable")
    bins = np.empty(len(confidence), dtype=int)
    bins[order] = np.arange(len(confidence)) * num_bins // max(len(confidence), 1)
    return bins


def _binned(confidence, correct, bins, num_bins):
    counts = np.bincount(bins, minlength=num_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=num_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=num_bins)
    return counts, conf_sum, acc_sum


def _top_label_bins(probs, labels, num_bins, binning="equal_width"):
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype("float64")
    if binning == "equal_width":
        bins = _equal_width_bins(confidence, num_bins)
    else:
        bins = _equal_mass_bins(confidence, num_bins)
    return _binned(confidence, correct, bins, num_bins)


def reliability_table(probs, labels, num_bins=15):
    """Per-bin counts, mean confidence and accuracy of the top label.

    Returns:
        dict of arrays of length `num_bins`: `bin_edges` (num_bins + 1),
        `count`, `confidence`, `accuracy` (NaN in empty bins).
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    num_bins = _checks.num_bins(num_bins)
    counts, conf_sum, acc_sum = _top_label_bins(probs, labels, num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "bin_edges": np.linspace(0.0, 1.0, num_bins + 1),
            "count": counts,
            "confidence": np.where(counts > 0, conf_sum / counts, np.nan),
            "accuracy": np.where(counts > 0, acc_sum / counts, np.nan),
        }


def expected_calibration_error(probs, labels, num_bins=15):
    """Top-label ECE with equal-width bins (Guo et al. 2017).

    ECE = sum_b (n_b / n) |acc(b) - conf(b)| over bins b of the top-label
    confidence.

    Example:

    >>> expected_calibration_error([[0.9, 0.1], [0.6, 0.4]], [0, 1], num_bins=10)
    0.35
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    num_bins = _checks.num_bins(num_bins)
    counts, conf_sum, acc_sum = _top_label_bins(probs, labels, num_bins)
    return float(np.sum(np.abs(acc_sum - conf_sum)) / len(labels))


def equal_mass_calibration_error(probs, labels, num_bins=15):
    """Top-label ECE with bins of equal counts (adaptive ECE; Nixon et al. 2019).

    Same formula as `expected_calibration_error`, with bin edges at the
    quantiles of the confidence instead of at i / num_bins.
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    num_bins = _checks.num_bins(num_bins)
    counts, conf_sum, acc_sum = _top_label_bins(probs, labels, num_bins, "equal_mass")
    return float(np.sum(np.abs(acc_sum - conf_sum)) / len(labels))


def maximum_calibration_error(probs, labels, num_bins=15):
    """Largest |accuracy - confidence| over non-empty equal-width bins (Guo et al. 2017)."""
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    num_bins = _checks.num_bins(num_bins)
    counts, conf_sum, acc_sum = _top_label_bins(probs, labels, num_bins)
    full = counts > 0
    return float(np.max(np.abs(acc_sum[full] - conf_sum[full]) / counts[full]))


def classwise_calibration_error(probs, labels, num_bins=15):
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the ECE of
    p_k against the event y = k, with equal-width bins.
    """
    probs, labels = _checks.probabilities_and_labels(probs, labels)
    num_bins = _checks.num_bins(num_bins)
    errors = []
    for k in range(probs.shape[1]):
        confidence = probs[:, k]
        hits = (labels == k).astype("float64")
        _, conf_sum, hit_sum = _binned(confidence, hits, _equal_width_bins(confidence, num_bins), num_bins)
        errors.append(np.sum(np.abs(hit_sum - conf_sum)) / len(labels))
    return float(np.mean(errors))
