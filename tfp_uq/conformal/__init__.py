"""Conformal calibration: intervals and prediction sets with a coverage guarantee.

`calibrate(predictor, x_cal, y_cal, coverage=0.9, score=...)` turns any
tfp_uq predictor into a `ConformalCalibrator` whose `predict` fills `lower` /
`upper` (regression) or `prediction_set` / `set_size` (classification) of the
usual `PredictionResult`. Scores: `AbsoluteResidual`, `NormalizedResidual`
(by the total or epistemic std), `CQR`; `LAC`, `APS`, `RAPS`. Mondrian
(group- or class-conditional) calibration via `groups=`.
"""

from tfp_uq.conformal.calibrator import ConformalCalibrator, calibrate
from tfp_uq.conformal.monitoring import rolling_coverage
from tfp_uq.conformal.quantile import conformal_quantile, conformal_rank, minimum_calibration_size
from tfp_uq.conformal.scores import (
    APS,
    CQR,
    LAC,
    RAPS,
    AbsoluteResidual,
    ClassificationScore,
    NormalizedResidual,
    RegressionScore,
    Score,
)

load = ConformalCalibrator.load

__all__ = [
    "APS",
    "CQR",
    "LAC",
    "RAPS",
    "AbsoluteResidual",
    "ClassificationScore",
    "ConformalCalibrator",
    "NormalizedResidual",
    "RegressionScore",
    "Score",
    "calibrate",
    "conformal_quantile",
    "conformal_rank",
    "load",
    "minimum_calibration_size",
    "rolling_coverage",
]
