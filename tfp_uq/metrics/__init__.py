"""Metrics of predictive quality, calibration and uncertainty ranking.

NumPy functions for evaluation, and `keras.metrics.Metric` classes
(`ExpectedCalibrationError`, `BrierScore`) for `model.compile`.
"""

from tfp_uq.metrics.classification import (
    accuracy,
    brier_score,
    classwise_calibration_error,
    equal_mass_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_table,
)
from tfp_uq.metrics.conformal import (
    group_coverage,
    in_interval,
    in_set,
    interval_coverage,
    mean_set_size,
    mean_width,
    set_coverage,
    size_stratified_coverage,
)
from tfp_uq.metrics.keras_metrics import BrierScore, ExpectedCalibrationError
from tfp_uq.metrics.ranking import aupr, auroc
from tfp_uq.metrics.regression import (
    calibration_curve,
    crps_gaussian,
    gaussian_nll,
    mean_interval_width,
    miscalibration_area,
    mixture_log_likelihood,
    picp,
    rmse,
)

__all__ = [
    "BrierScore",
    "ExpectedCalibrationError",
    "accuracy",
    "aupr",
    "auroc",
    "brier_score",
    "calibration_curve",
    "classwise_calibration_error",
    "crps_gaussian",
    "equal_mass_calibration_error",
    "expected_calibration_error",
    "gaussian_nll",
    "group_coverage",
    "in_interval",
    "in_set",
    "interval_coverage",
    "maximum_calibration_error",
    "mean_interval_width",
    "mean_set_size",
    "mean_width",
    "miscalibration_area",
    "mixture_log_likelihood",
    "negative_log_likelihood",
    "picp",
    "reliability_table",
    "rmse",
    "set_coverage",
    "size_stratified_coverage",
]
