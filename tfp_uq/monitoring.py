"""Monitoring uncertainty in deployment: flag batches that drift."""

import json

import numpy as np
from scipy import stats

from tfp_uq import _validation

__all__ = ["UncertaintyMonitor"]


SCORES = ("auto", "mutual_information", "total_entropy", "variation_ratio", "std", "epistemic_std")


def _from_result(result, score):
    """The per-input score named `score` of a `PredictionResult` (regression: the largest over targets)."""
    if score == "auto":
        score = "mutual_information" if result.task == "classification" else "std"
    if score in ("std", "epistemic_std"):
        variance = result.variance if score == "std" else result.epistemic_variance
        if variance is None:
            raise ValueError(f"score={score!r} needs a regression result; this one is {result.task}")
        values = np.sqrt(np.asarray(variance, dtype="float64"))
        return values.reshape(len(values), -1).max(axis=1)
    values = getattr(result, score)
    if values is None:
        raise ValueError(f"score={score!r} needs a classification result; this one is {result.task}")
    return values


def _scores(name, values, score):
    from tfp_uq.prediction import PredictionResult

    if isinstance(values, PredictionResult):
        values = _from_result(values, score)
    values = np.asarray(values, dtype="float64").ravel()
    if values.size < 2:
        raise ValueError(f"{name} must hold at least 2 scores, got {values.size}")
    return values


class UncertaintyMonitor:
    """Compares incoming uncertainty scores with a reference distribution.

    Fitted on scores of in-distribution (validation) inputs, it scores each
    incoming batch with the two-sample Kolmogorov-Smirnov statistic and the
    population stability index (PSI) over reference deciles, and flags
    drift when the KS p-value is below `ks_alpha` or the PSI above
    `psi_threshold` (0.2 is the usual "significant shift" rule of thumb).
    Scores may be arrays or `PredictionResult`s of any posterior (the
    `score` field of each). A batch with any NaN or infinite score (an input
    or a prediction that failed) is flagged too, and its non-finite scores
    are counted and left out of the statistics.

    Args:
        num_bins: PSI bins (reference quantiles).
        psi_threshold: PSI above which a batch drifts (> 0).
        ks_alpha: KS p-value below which a batch drifts, in (0, 1).
        score: the field read from a `PredictionResult`: "auto" (mutual
            information for classification, the total std for regression),
            "mutual_information", "total_entropy", "variation_ratio", "std"
            or "epistemic_std" (regression: the largest over targets).

    Example:

    >>> monitor = tfp_uq.monitoring.UncertaintyMonitor().fit(val_result)
    >>> report = monitor.score(tfp_uq.predict(model, batch))
    >>> report["drift"], report["psi"], report["num_nonfinite"]
    >>> monitor.save("monitor.json")
    """

    def __init__(self, num_bins=10, psi_threshold=0.2, ks_alpha=0.01, score="auto"):
        self.num_bins = _validation.positive_int("num_bins", num_bins)
        self.psi_threshold = _validation.positive("psi_threshold", psi_threshold)
        self.ks_alpha = _validation.open_unit_interval("ks_alpha", ks_alpha)
        self.score_name = _validation.one_of("score", score, SCORES)
        self.reference = None

    def fit(self, reference_scores):
        """Stores the reference scores (finite: in-distribution validation data); returns self."""
        reference = _scores("reference_scores", reference_scores, self.score_name)
        if not np.all(np.isfinite(reference)):
            raise ValueError("reference_scores must be finite")
        self.reference = np.sort(reference)
        return self

    def _bin_fractions(self, values):
        edges = np.quantile(self.reference, np.linspace(0, 1, self.num_bins + 1)[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=self.num_bins)
        return counts / counts.sum()

    def score(self, scores):
        """Drift report of a batch: ks_statistic, ks_pvalue, psi, num_nonfinite, drift."""
        if self.reference is None:
            raise ValueError("call fit with reference scores before score")
        scores = _scores("scores", scores, self.score_name)
        finite = np.isfinite(scores)
        num_nonfinite = int(np.sum(~finite))
        if finite.sum() < 2:
            return {"ks_statistic": float("nan"), "ks_pvalue": float("nan"), "psi": float("nan"),
                    "num_nonfinite": num_nonfinite, "drift": True}  # fmt: skip
        scores = scores[finite]
        ks = stats.ks_2samp(self.reference, scores)
        expected = np.maximum(self._bin_fractions(self.reference), 1e-6)
        actual = np.maximum(self._bin_fractions(scores), 1e-6)
        psi = float(np.sum((actual - expected) * np.log(actual / expected)))
        return {
            "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
            "psi": psi,
            "num_nonfinite": num_nonfinite,
            "drift": bool(ks.pvalue < self.ks_alpha or psi > self.psi_threshold or num_nonfinite > 0),
        }

    def to_json(self):
        return json.dumps(
            {
                "num_bins": self.num_bins,
                "psi_threshold": self.psi_threshold,
                "ks_alpha": self.ks_alpha,
                "score": self.score_name,
                "reference": None if self.reference is None else self.reference.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text):
        state = json.loads(text)
        monitor = cls(state["num_bins"], state["psi_threshold"], state["ks_alpha"], state.get("score", "auto"))
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
