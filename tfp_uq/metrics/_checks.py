"""Input checks shared by the metric functions."""

import numpy as np

from tfp_uq import _validation


def probabilities_and_labels(probs, labels, atol=1e-3):
    """Validates class probabilities (n, k) and labels: integers (n,) or one-hot (n, k).

    Returns the probabilities and the labels as integer class indices.
    """
    probs = np.asarray(probs, dtype="float64")
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (num_examples, num_classes), got {probs.shape}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2 and labels.shape == probs.shape:
        if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1)):
            raise ValueError(
                f"labels of shape {labels.shape} must be one-hot (a single 1 per row); "
                "soft labels are not supported: pass integer class indices"
            )
        labels = labels.argmax(axis=1)
    if labels.shape != (probs.shape[0],):
        raise ValueError(
            f"labels must be integer class indices of shape ({probs.shape[0]},) or one-hot of "
            f"shape {probs.shape} to match probs, got {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("labels must be integer class indices")
        labels = labels.astype("int64")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(
            f"labels must be in [0, {probs.shape[1] - 1}], got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    if np.any(probs < 0) or not np.all(np.isfinite(probs)):
        raise ValueError("probs must be finite and non-negative")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=atol):
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(f"each row of probs must sum to 1, found a row summing to {worst:.6g}")
    return probs, labels.astype("int64")


def num_bins(value):
    return _validation.positive_int("num_bins", value)
