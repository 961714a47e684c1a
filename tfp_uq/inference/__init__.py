"""Sampling-based inference: HMC and NUTS for small Keras models."""

from tfp_uq.inference.hmc import PosteriorSamples, sample_posterior

__all__ = [
    "PosteriorSamples",
    "sample_posterior",
]
