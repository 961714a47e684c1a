"""Reading batched data sources into arrays, as `Model.predict` reads them.

Sources: a batched `tf.data.Dataset` or a `keras.utils.PyDataset` (a
finite one: its batches are read once). Python generators and other
iterators are refused with a clear error, since they may never end.
"""

import collections.abc

import keras
import numpy as np

SOURCES = "arrays (or a list or dict of arrays), a batched tf.data.Dataset or a keras.utils.PyDataset"


def _is_tf_dataset(value):
    return type(value).__module__.startswith("tensorflow") and hasattr(value, "as_numpy_iterator")


def is_dataset(value):
    """Whether `value` is a data source of batches (`tf.data.Dataset` or `PyDataset`)."""
    return _is_tf_dataset(value) or isinstance(value, keras.utils.PyDataset)


def kind(source):
    """What a data source is, in words a user recognises."""
    return "tf.data.Dataset" if _is_tf_dataset(source) else "keras.utils.PyDataset"


def check_not_iterator(value, name):
    """Raises a TypeError naming `name` if `value` is a generator or other iterator."""
    if isinstance(value, collections.abc.Iterator):
        raise TypeError(
            f"{name} is a {type(value).__name__}, which may never end; pass {SOURCES} "
            "(wrap a generator in tf.data.Dataset.from_generator(...).take(n))"
        )


def _batches(source, name):
    if _is_tf_dataset(source):
        yield from source.as_numpy_iterator()
        return
    num_batches = source.num_batches
    if num_batches is None:
        raise ValueError(f"{name} is a keras.utils.PyDataset without a length: give it __len__")
    for index in range(num_batches):
        yield keras.tree.map_structure(np.asarray, source[index])


def to_arrays(source, name="x"):
    """`(x, y)` of a batched data source, concatenated over its batches.

    Elements are read as Keras reads them: `x`, or a tuple `(x,)`, `(x, y)`
    or `(x, y, sample_weight)` (weights ignored); `x` may be a list, tuple or
    dict of arrays. `y` is None when the elements have no targets.
    """
    source_kind = kind(source)
    xs, ys = [], []
    for element in _batches(source, name):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
        if any(np.ndim(leaf) == 0 for leaf in keras.tree.flatten(x)):
            raise ValueError(f"{name} is a {source_kind} of unbatched elements: batch it first")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"{name} is an empty {source_kind}")

    def concatenate(parts):
        return keras.tree.map_structure(lambda *leaves: np.concatenate(leaves, axis=0), *parts)

    return concatenate(xs), None if ys[0] is None else concatenate(ys)
