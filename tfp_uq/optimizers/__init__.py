"""Optimizers that learn a posterior over the weights while they train."""

from tfp_uq.optimizers.ivon import IVON, IVONPosterior

__all__ = ["IVON", "IVONPosterior"]
