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

    def check_coverage(self, result, y, calibrator=None, coverage=None, window=100, alpha=0.01):
        """When labels arrive: does a conformal promise still hold? (`tfp_uq.conformal.rolling_coverage`)

        Args:
            result: the `PredictionResult` of the inputs, in arrival order,
                with intervals (`lower`, `upper`) or sets (`prediction_set`),
                e.g. from `calibrator.predict(x)`.
            y: their targets or integer labels, as they arrived.
            calibrator: the `tfp_uq.conformal` calibrator that made the
                intervals: gives `coverage` and the calibration size (the
                exact beta-binomial law of split-conformal coverage).
            coverage: the promised coverage, when no calibrator is given
                (then the binomial law is used).
            window: inputs per rolling window (at most their number).
            alpha: a window whose p-value is below this breaks the promise.

        Returns:
            dict: "coverage" (over all inputs), "rolling_coverage" and
            "p_value" (per window), "broken" (whether any window is below
            `alpha`). Rows with NaN predictions count as not covered.
        """
        from tfp_uq import conformal, metrics

        alpha = _validation.open_unit_interval("alpha", alpha)
        num_calibration = None
        if calibrator is not None:
            coverage, num_calibration = calibrator.coverage, calibrator.num_calibration
        if coverage is None:
            raise ValueError("give the calibrator, or the promised coverage")
        if result.prediction_set is not None:
            covered = metrics.in_set(result.prediction_set, y)
        elif result.lower is not None:
            covered = metrics.in_interval(y, result.lower, result.upper)
            covered = covered.reshape(len(covered), -1).all(axis=1)
        else:
            raise ValueError("result has no intervals or sets: predict with a tfp_uq.conformal calibrator")
        if isinstance(num_calibration, (list, tuple)):  # per group: test against the smallest
            num_calibration = min(num_calibration)
        report = conformal.rolling_coverage(covered, coverage, min(window, len(covered)), num_calibration)
        return {
            "coverage": float(np.mean(covered)),
            "rolling_coverage": report["coverage"],
            "p_value": report["p_value"],
            "broken": bool(np.any(report["p_value"] < alpha)),
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
