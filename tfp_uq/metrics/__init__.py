"""Metrics of predictive quality and calibration."""

from tfp_uq.metrics.classification import (
    accuracy,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_table,
)
