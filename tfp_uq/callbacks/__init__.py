"""Callbacks for `model.fit`: KL annealing, calibration logging, ELBO monitoring."""

from tfp_uq.callbacks.calibration_logger import CalibrationLogger
from tfp_uq.callbacks.elbo_monitor import ELBOMonitor
from tfp_uq.callbacks.kl_annealing import KLAnnealing

__all__ = [
    "CalibrationLogger",
    "ELBOMonitor",
    "KLAnnealing",
]
