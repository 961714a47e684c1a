"""Reading prediction inputs: arrays, lists or dicts of them, or batched data sources."""

import keras
import numpy as np

from tfp_uq import _datasets

__all__ = ["as_inputs", "check_input_shapes", "nonfinite_rows", "pack"]

# Rows named in an error about non-finite inputs.
MAX_ROWS_NAMED = 10


def as_inputs(x):
    """`(arrays, keys)`: the input arrays and, for a dict `x`, their keys (sorted)."""
    if _datasets.is_dataset(x):
        x = _datasets.to_arrays(x)[0]
    _datasets.check_not_iterator(x, "x")
    keys = None
    if isinstance(x, dict):
        if not x:
            raise ValueError("x must not be an empty dict")
        keys = sorted(x)
        inputs = [x[key] for key in keys]
    else:
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    arrays = []
    for value in inputs:
        array = np.asarray(value)
        if array.ndim < 1 or array.shape[0] == 0:
            raise ValueError(f"x must have a non-empty batch dimension, got shape {array.shape}")
        if array.dtype.kind == "f":
            array = array.astype(keras.backend.floatx())
        arrays.append(array)
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError("all inputs in x must have the same batch size")
    return arrays, keys


def pack(arrays, keys):
    """The model's input structure from `as_inputs`'s arrays: one array, a list, or a dict."""
    if keys is not None:
        return dict(zip(keys, arrays))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def check_input_shapes(tensors, arrays, name="x"):
    """Raises a ValueError naming `name` when an array's per-example shape is not its input's.

    Args:
        tensors: the model's symbolic inputs, or None (nothing to check).
        arrays: the arrays, in the same order.
    """
    if not tensors or len(tensors) != len(arrays):
        return
    for tensor, array in zip(tensors, arrays):
        want, got = tuple(tensor.shape[1:]), tuple(np.shape(array)[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(f"{name} has per-example shape {got}, but the model expects {want}")


def nonfinite_rows(arrays):
    """Boolean `(n,)`: rows with a NaN or infinite value in any floating input."""
    rows = np.zeros(arrays[0].shape[0], dtype=bool)
    for array in arrays:
        if array.dtype.kind in "fc":
            rows |= ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    return rows


def describe_rows(rows):
    """'rows 3, 17 (2 of 100)': the first `MAX_ROWS_NAMED` indices of a boolean mask."""
    indices = np.flatnonzero(rows)
    named = ", ".join(str(i) for i in indices[:MAX_ROWS_NAMED])
    more = ", ..." if len(indices) > MAX_ROWS_NAMED else ""
    return f"row{'s' if len(indices) > 1 else ''} {named}{more} ({len(indices)} of {len(rows)})"
