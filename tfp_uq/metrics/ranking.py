"""How well an uncertainty score separates two groups (errors, OOD inputs).

The score is any number that should be larger for the positive group: an
entropy or mutual information for out-of-distribution inputs, one minus the
confidence for misclassified ones.
"""

import numpy as np

__all__ = ["auroc", "aupr"]


def _scores_and_targets(scores, is_positive):
    scores = np.asarray(scores, dtype="float64").ravel()
    is_positive = np.asarray(is_positive).ravel()
    if scores.shape != is_positive.shape:
        raise ValueError(
            f"scores and is_positive must have the same length, got {scores.shape} and {is_positive.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if not np.all(np.isin(is_positive, (0, 1))):
        raise ValueError("is_positive must hold booleans or 0/1")
    is_positive = is_positive.astype(bool)
    if is_positive.all() or not is_positive.any():
        raise ValueError("is_positive must contain both positives and negatives")
    return scores, is_positive


def auroc(scores, is_positive):
    """Area under the ROC curve of `scores` for `is_positive` (ties count 1/2).

    The probability that a random positive scores higher than a random
    negative (Mann-Whitney U / (n+ n-)).

    Example:

    >>> auroc([0.9, 0.8, 0.1, 0.3], [1, 1, 0, 0])
    1.0
    """
    scores, is_positive = _scores_and_targets(scores, is_positive)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + end - 1) + 1
    n_pos = is_positive.sum()
    n_neg = len(scores) - n_pos
    u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def aupr(scores, is_positive):
    """Area under the precision-recall curve as average precision.

    AP = sum_n (R_n - R_{n-1}) P_n over decreasing score thresholds (the
    step-wise definition of scikit-learn's `average_precision_score`).
    """
    scores, is_positive = _scores_and_targets(scores, is_positive)
    order = np.argsort(-scores, kind="mergesort")
    scores, hits = scores[order], is_positive[order].astype("float64")
    # One threshold per distinct score: the last index of each tie group.
    last = np.concatenate([np.flatnonzero(np.diff(scores)), [len(scores) - 1]])
    true_positives = np.cumsum(hits)[last]
    precision = true_positives / (last + 1)
    recall = true_positives / hits.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
