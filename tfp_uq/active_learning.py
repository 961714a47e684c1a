"""Active learning: which unlabelled inputs to label next."""

import numpy as np

from tfp_uq import _validation

__all__ = ["acquisition_scores", "select"]


ACQUISITIONS = ("bald", "max_entropy", "variation_ratio")
_FIELDS = {
    "bald": "mutual_information",
    "max_entropy": "total_entropy",
    "variation_ratio": "variation_ratio",
}


def acquisition_scores(result, method="bald"):
    """Scores per input from a classification `PredictionResult`.

    - "bald": mutual information between label and weights (Houlsby et al. 2011);
    - "max_entropy": predictive entropy;
    - "variation_ratio": 1 - modal-class frequency over samples.
    """
    _validation.one_of("method", method, ACQUISITIONS)
    if getattr(result, "task", None) != "classification":
        raise ValueError("acquisition needs a classification PredictionResult from tfp_uq.predict")
    return np.asarray(getattr(result, _FIELDS[method]))


def select(result, num_queries, method="bald"):
    """Indices of the `num_queries` pool inputs with the highest scores.

    Example:

    >>> pool = tfp_uq.predict(model, x_pool, num_samples=50)
    >>> to_label = tfp_uq.active_learning.select(pool, 10, method="bald")
    """
    scores = acquisition_scores(result, method)
    num_queries = _validation.positive_int("num_queries", num_queries)
    if num_queries > len(scores):
        raise ValueError(f"num_queries must be <= the pool size {len(scores)}, got {num_queries}")
    return np.argsort(-scores, kind="mergesort")[:num_queries]
