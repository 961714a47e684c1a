"""Monitoring uncertainty in deployment: flag batches that drift."""

import json

import numpy as np
from scipy import stats

from tfp_uq import _validation

__all__ = ["UncertaintyMonitor"]


def _scores(name, values):
    values = np.asarray(values, dtype="float64").ravel()
    if values.size < 2:
        raise ValueError(f"{name} must hold at least 2 scores, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite")
    return values


class UncertaintyMonitor:
    """Compares incoming uncertainty scores with a reference distribution.

    Fitted on scores of in-distribution (validation) inputs, it scores each
    incoming batch with the two-sample Kolmogorov-Smirnov statistic and the
    population stability index (PSI) over reference deciles, and flags
    drift when the KS p-value is below `ks_alpha` or the PSI above
    `psi_threshold` (0.2 is the usual "significant shift" rule of thumb).

    Example:

    >>> monitor = tfp_uq.monitoring.UncertaintyMonitor().fit(val_result.mutual_information)
    >>> report = monitor.score(batch_result.mutual_information)
    >>> report["drift"], report["psi"]
    >>> monitor.save("monitor.json")
    """

    def __init__(self, num_bins=10, psi_threshold=0.2, ks_alpha=0.01):
        self.num_bins = _validation.positive_int("num_bins", num_bins)
        self.psi_threshold = _validation.positive("psi_threshold", psi_threshold)
        self.ks_alpha = _validation.open_unit_interval("ks_alpha", ks_alpha)
        self.reference = None

    def fit(self, reference_scores):
        """Stores the reference scores; returns self."""
        self.reference = np.sort(_scores("reference_scores", reference_scores))
        return self

    def _bin_fractions(self, values):
        edges = np.quantile(self.reference, np.linspace(0, 1, self.num_bins + 1)[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=self.num_bins)
        return counts / counts.sum()

    def score(self, scores):
        """Drift report of a batch: ks_statistic, ks_pvalue, psi, drift."""
        if self.reference is None:
            raise ValueError("call fit with reference scores before score")
        scores = _scores("scores", scores)
        ks = stats.ks_2samp(self.reference, scores)
        expected = np.maximum(self._bin_fractions(self.reference), 1e-6)
        actual = np.maximum(self._bin_fractions(scores), 1e-6)
        psi = float(np.sum((actual - expected) * np.log(actual / expected)))
        return {
            "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
            "psi": psi,
            "drift": bool(ks.pvalue < self.ks_alpha or psi > self.psi_threshold),
        }

    def to_json(self):
        return json.dumps(
            {
                "num_bins": self.num_bins,
                "psi_threshold": self.psi_threshold,
                "ks_alpha": self.ks_alpha,
                "reference": None if self.reference is None else self.reference.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text):
        state = json.loads(text)
        monitor = cls(state["num_bins"], state["psi_threshold"], state["ks_alpha"])
        if state["reference"] is not None:
            monitor.reference = np.asarray(state["reference"], dtype="float64")
        return monitor

    def save(self, path):
        with open(path, "w") as handle:
            handle.write(self.to_json())

    @classmethod
    def load(cls, path):
        with open(path) as handle:
            return cls.from_json(handle.read())
