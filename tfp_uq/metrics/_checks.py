"""Input checks shared by the metric functions."""

import numpy as np

from tfp_uq import _validation


def class_probabilities(probs):
    """(n, k) class probabilities; a binary classifier's P(class 1), shaped (n,) or (n, 1), becomes [1 - p, p]."""
    probs = np.asarray(probs, dtype="float64")
    if probs.ndim == 1 or (probs.ndim == 2 and probs.shape[1] == 1):
        positive = probs.reshape(-1, 1)
        return np.concatenate([1.0 - positive, positive], axis=1)
    if probs.ndim != 2:
        raise ValueError(
            "probs must have shape (num_examples, num_classes), or (num_examples,) or (num_examples, 1) "
            f"for a binary classifier's probability of class 1, got {probs.shape}"
        )
    return probs


def probabilities_and_labels(probs, labels, atol=1e-3):
    """Validates class probabilities (n, k) and labels: integers (n,) or one-hot (n, k).

    A binary classifier's P(class 1), shaped (n,) or (n, 1), stands for the
    two classes' [1 - p, p]. Returns the (n, k) probabilities and the labels
    as integer class indices.
    """
    probs = class_probabilities(probs)
    labels = np.asarray(labels)
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
        raise ValueError(f"labels must be in [0, {probs.shape[1] - 1}], got values in [{labels.min()}, {labels.max()}]")
    if np.any(probs < 0) or not np.all(np.isfinite(probs)):
        raise ValueError("probs must be finite and non-negative")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=atol):
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(f"each row of probs must sum to 1, found a row summing to {worst:.6g}")
    return probs, labels.astype("int64")


def num_bins(value):
    return _validation.positive_int("num_bins", value)
