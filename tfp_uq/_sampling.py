"""The vectorised Monte Carlo mode of `tfp_uq.predict`, and its stateless seeds.

`tfp_uq.predict` tiles a batch of B inputs S times into one batch of S * B
(sample-major: rows s * B ... s * B + B - 1 belong to sample s) and traces the
model inside `vectorized(S, seeds)`. Stochastic layers read `num_samples()`
at trace time: a weight-sampling layer then draws S weight samples and
applies sample s to its block of rows, so one pass computes S independent
predictions with the FLOPs of S plain passes. Layers whose noise is already
independent per row (local reparameterization, dropout) need do nothing.

Each stochastic layer takes its seed for the call from `layer_seed`, a
function of the seed tensor passed into the computation, so prediction never
reads or updates a layer's seed generator: the same seed gives the same
numbers whatever runs beside it (other threads, a `fit` in progress).
"""

import contextlib
import threading

__all__ = ["layer_seed", "num_samples", "vectorized"]

_STATE = threading.local()


def num_samples():
    """The number of tiled Monte Carlo samples being traced, or None."""
    return getattr(_STATE, "num_samples", None)


def layer_seed(layer):
    """The stateless `[2]` seed of `layer`'s call in the vectorised mode, or None outside it."""
    seeds = getattr(_STATE, "seeds", None)
    return None if seeds is None else seeds(layer)


@contextlib.contextmanager
def vectorized(samples, seeds=None):
    """Within this context, batches are `samples` tiled copies of the inputs.

    Args:
        samples: the number of tiled copies S.
        seeds: callable(layer) -> the layer's `[2]` seed tensor, or None to
            let layers use their own seed generators.
    """
    previous = num_samples(), getattr(_STATE, "seeds", None)
    _STATE.num_samples, _STATE.seeds = samples, seeds
    try:
        yield
    finally:
        _STATE.num_samples, _STATE.seeds = previous
