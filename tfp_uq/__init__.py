"""tfp-uq: honest uncertainty for any Keras 3 model."""

from tfp_uq import (
    active_learning,
    callbacks,
    conformal,
    ensembles,
    inference,
    layers,
    losses,
    metrics,
    monitoring,
    optimizers,
    priors,
    recalibration,
    selective,
)
from tfp_uq.convert import bayesianize
from tfp_uq.elbo import bayesian_layers, set_deterministic, set_kl_weight
from tfp_uq.export import export
from tfp_uq.layers import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
    GaussianHead,
)
from tfp_uq.prediction import PredictionResult, predict

__all__ = [
    "DenseFlipout",
    "DenseLocalReparameterization",
    "DenseReparameterization",
    "GaussianHead",
    "PredictionResult",
    "active_learning",
    "bayesian_layers",
    "bayesianize",
    "callbacks",
    "conformal",
    "ensembles",
    "export",
    "inference",
    "layers",
    "losses",
    "metrics",
    "monitoring",
    "optimizers",
    "predict",
    "priors",
    "recalibration",
    "selective",
    "set_deterministic",
    "set_kl_weight",
]

__version__ = "0.1.0"


def __getattr__(name):
    # tfp_uq.plots needs the optional matplotlib: import it on first use.
    if name == "plots":
        import importlib

        return importlib.import_module("tfp_uq.plots")
    raise AttributeError(f"module 'tfp_uq' has no attribute {name!r}")
