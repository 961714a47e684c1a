"""Training data for a Laplace fit, read batch by batch as `Model.fit` reads it."""

import keras
import numpy as np

from tfp_uq import _datasets, _validation


class Batches:
    """`(x, y)` batches of `data`: a tuple `(x, y)` of arrays, a batched `tf.data.Dataset` or a `PyDataset`.

    `x` may be an array or a list / dict of arrays. Raises errors naming
    `data` for missing targets, unbatched or empty sources and mismatched
    lengths.

    Args:
        data: the data source.
        batch_size: examples per batch for arrays (a source's own batches are kept).
    """

    def __init__(self, data, batch_size):
        _datasets.check_not_iterator(data, "data")
        self.batch_size = _validation.positive_int("batch_size", batch_size)
        self._source = data if _datasets.is_dataset(data) else None
        if self._source is None:
            if not (isinstance(data, (tuple, list)) and len(data) == 2):
                raise TypeError(
                    f"data must be a tuple (x, y) of arrays, a batched tf.data.Dataset or a keras.utils.PyDataset "
                    f"of (x, y) batches; got {type(data).__name__}"
                )
            x, y = data
            if y is None:
                raise ValueError("data has no targets: a Laplace fit needs (x, y)")
            self._x = keras.tree.map_structure(_as_input, x)
            self._y = np.asarray(y)
            sizes = {len(leaf) if np.ndim(leaf) else 0 for leaf in keras.tree.flatten(self._x)} | {len(self._y)}
            if sizes == {0}:
                raise ValueError("data is empty: x and y have no examples")
            if len(sizes) != 1:
                raise ValueError(f"data has x and y of different lengths: {sorted(sizes)}")
            self.num_examples = len(self._y)

    @property
    def num_batches(self):
        """Number of batches, or None when the source does not say."""
        if self._source is None:
            return -(-self.num_examples // self.batch_size)
        if isinstance(self._source, keras.utils.PyDataset):
            return self._source.num_batches
        cardinality = int(self._source.cardinality())
        return cardinality if cardinality >= 0 else None

    def __iter__(self):
        if self._source is None:
            for start in range(0, self.num_examples, self.batch_size):
                yield _rows(self._x, self._y, start, self.batch_size)
            return
        kind = _datasets.kind(self._source)
        empty = True
        for element in _source_batches(self._source):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
            if y is None:
                raise ValueError(f"data is a {kind} without targets: its elements must be (x, y)")
            if any(np.ndim(leaf) == 0 for leaf in keras.tree.flatten(x)) or np.ndim(y) == 0:
                raise ValueError(f"data is a {kind} of unbatched elements: batch it first (e.g. dataset.batch(128))")
            empty = False
            yield keras.tree.map_structure(_as_input, x), np.asarray(y)
        if empty:
            raise ValueError(f"data is an empty {kind}")


def _as_input(leaf):
    """An array, floats as Keras's float type (the model's inputs)."""
    leaf = np.asarray(leaf)
    return leaf.astype(keras.backend.floatx()) if leaf.dtype.kind == "f" else leaf


def _source_batches(source):
    if isinstance(source, keras.utils.PyDataset):
        if source.num_batches is None:
            raise ValueError("data is a keras.utils.PyDataset without a length: give it __len__")
        for index in range(source.num_batches):
            yield source[index]
        return
    yield from source.as_numpy_iterator()


def fixed_size(batches):
    """`(index, (x, y, weights))` of `batches`, each of the first batch's size (split, or padded with weight 0)."""
    size = None
    for index, (x, y) in enumerate(batches):
        size = size or len(y)
        for start in range(0, len(y), size):  # a source's batch larger than its first is split
            yield index, padded(*_rows(x, y, start, size), size)


def _rows(x, y, start, size):
    """Examples `start` to `start + size` of `(x, y)`."""
    rows = slice(start, start + size)
    return keras.tree.map_structure(lambda leaf: leaf[rows], x), y[rows]


def padded(x, y, size):
    """`(x, y, weights)` with the batch padded to `size` examples of weight 0 (one compiled shape for all)."""
    count = len(y)
    weights = np.zeros(size, dtype="float32")
    weights[:count] = 1.0
    if count == size:
        return x, y, weights

    def pad(leaf):
        return np.concatenate([leaf, np.repeat(leaf[-1:], size - count, axis=0)], axis=0)

    return keras.tree.map_structure(pad, x), pad(y), weights
