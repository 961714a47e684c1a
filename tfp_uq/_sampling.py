"""The vectorised Monte Carlo mode used by `tfp_uq.predict`.

`tfp_uq.predict` tiles a batch of B inputs S times into one batch of S * B
(sample-major: rows s * B ... s * B + B - 1 belong to sample s) and traces the
model inside `vectorized(S)`. Stochastic layers read `num_samples()` at trace
time: a weight-sampling layer then draws S weight samples and applies sample
s to its block of rows, so one pass computes S independent predictions with
the FLOPs of S plain passes. Layers whose noise is already independent per
row (local reparameterization, dropout) need do nothing.
"""

import contextlib
import threading

_STATE = threading.local()


def num_samples():
    """The number of tiled Monte Carlo samples being traced, or None."""
    return getattr(_STATE, "num_samples", None)


@contextlib.contextmanager
def vectorized(samples):
    """Within this context, batches are `samples` tiled copies of the inputs."""
    previous = num_samples()
    _STATE.num_samples = samples
    try:
        yield
    finally:
        _STATE.num_samples = previous
