"""Callbacks for `model.fit`: KL annealing and calibration logging."""

from tfp_uq.callbacks.calibration_logger import CalibrationLogger
from tfp_uq.callbacks.kl_annealing import KLAnnealing

__all__ = [
    "CalibrationLogger",
    "KLAnnealing",
]
