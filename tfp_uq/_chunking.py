"""How prediction splits inputs and samples into compiled calls that fit in memory."""

import numpy as np

__all__ = ["MAX_CHUNK_FLOATS", "chunks", "output_width"]

# Upper bound on the floats one compiled chunk of samples x inputs holds in
# its widest activation, to bound memory (64 MiB of float32).
MAX_CHUNK_FLOATS = 16 * 2**20


def chunks(num_samples, batch_size, width, n, max_per_call=None):
    """(inputs per call, samples per call, calls per batch) within memory.

    Inputs per call come first: a weight sample is drawn once per call and
    shared by all its inputs, so large input batches draw fewer weights.
    """
    if batch_size is None:
        batch_size = int(max(1, min(n, MAX_CHUNK_FLOATS // width)))
    most = max(1, min(num_samples, MAX_CHUNK_FLOATS // (batch_size * width), max_per_call or num_samples))
    calls = -(-num_samples // most)
    # Equal chunks, so that one compiled function serves every call.
    return batch_size, -(-num_samples // calls), calls


def output_width(model):
    """Floats per input in the model's outputs, at least 256 (the widest
    activation is unknown; assume at least that many)."""
    try:
        shapes = model.output_shape
        shapes = list(shapes.values()) if isinstance(shapes, dict) else shapes
        shapes = [shapes] if isinstance(shapes, tuple) else shapes
        return max(256, sum(int(np.prod(shape[1:])) for shape in shapes))
    except (AttributeError, ValueError, TypeError):
        return 256
