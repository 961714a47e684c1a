"""Reading a batched `tf.data.Dataset` into arrays, as `Model.predict` reads it."""

import keras
import numpy as np


def is_dataset(value):
    """Whether `value` is a `tf.data.Dataset` (without importing TensorFlow)."""
    return type(value).__module__.startswith("tensorflow") and hasattr(value, "as_numpy_iterator")


def to_arrays(dataset, name="x"):
    """`(x, y)` of a batched dataset, concatenated over its batches.

    Elements are read as Keras reads them: `x`, or a tuple `(x,)`, `(x, y)`
    or `(x, y, sample_weight)` (weights ignored); `x` may be a list, tuple or
    dict of arrays. `y` is None when the elements have no targets.
    """
    import tensorflow as tf

    xs, ys = [], []
    for element in dataset.as_numpy_iterator():
        x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
        if any(np.ndim(leaf) == 0 for leaf in tf.nest.flatten(x)):
            raise ValueError(f"{name} is a tf.data.Dataset of unbatched elements: call .batch(n) on it first")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"{name} is an empty tf.data.Dataset")

    def concatenate(parts):
        return tf.nest.map_structure(lambda *leaves: np.concatenate(leaves, axis=0), *parts)

    return concatenate(xs), None if ys[0] is None else concatenate(ys)
