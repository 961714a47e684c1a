"""`keras.metrics.Metric` versions for `model.compile(metrics=[...])`.

They stream over batches and read the model's output as class
probabilities, one (stochastic) forward pass per example; a single sigmoid
unit (a binary classifier) is read as P(class 1).
"""

import keras
from keras import ops

from tfp_uq import _summaries, _validation

__all__ = ["ExpectedCalibrationError", "BrierScore"]


def _labels_and_probs(y_true, y_pred, from_logits=False):
    num_classes = y_pred.shape[-1]
    # One sigmoid unit (a binary classifier) becomes the two classes' [1 - p, p].
    probs = _summaries.class_probabilities(ops.cast(ops.reshape(y_pred, (-1, num_classes)), "float32"), from_logits)
    one_hot = len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == num_classes != 1
    labels = ops.argmax(y_true, axis=-1) if one_hot else y_true
    return ops.cast(ops.reshape(labels, (-1,)), "int32"), probs


@keras.saving.register_keras_serializable(package="tfp_uq")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Top-label ECE with equal-width bins, streamed (Guo et al. 2017).

    Labels may be integers or one-hot; predictions are probabilities, or
    logits with `from_logits=True`.

    Args:
        num_bins: number of equal-width confidence bins (positive integer).
        from_logits: the model outputs logits (softmax, or sigmoid for one unit).
        name, dtype: as for any Keras metric.

    Example:

    >>> model.compile("adam", "sparse_categorical_crossentropy",
    ...               metrics=[tfp_uq.metrics.ExpectedCalibrationError()])
    """

    def __init__(self, num_bins=15, from_logits=False, name="ece", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "down"
        self.num_bins = _validation.positive_int("num_bins", num_bins)
        self.from_logits = _validation.boolean("from_logits", from_logits)
        self.counts = self.add_variable((self.num_bins,), "zeros", name="counts")
        self.confidence_sums = self.add_variable((self.num_bins,), "zeros", name="confidence_sums")
        self.correct_sums = self.add_variable((self.num_bins,), "zeros", name="correct_sums")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, probs = _labels_and_probs(y_true, y_pred, self.from_logits)
        confidence = ops.max(probs, axis=-1)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(probs, axis=-1), "int32"), labels), "float32")
        bins = ops.clip(ops.cast(ops.ceil(confidence * self.num_bins), "int32") - 1, 0, self.num_bins - 1)
        onehot = ops.one_hot(bins, self.num_bins)
        if sample_weight is not None:
            onehot = onehot * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        self.counts.assign_add(ops.sum(onehot, axis=0))
        self.confidence_sums.assign_add(ops.sum(onehot * confidence[:, None], axis=0))
        self.correct_sums.assign_add(ops.sum(onehot * correct[:, None], axis=0))

    def result(self):
        total = ops.maximum(ops.sum(self.counts), 1.0)
        return ops.sum(ops.abs(self.correct_sums - self.confidence_sums)) / total

    def reset_state(self):
        for variable in (self.counts, self.confidence_sums, self.correct_sums):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {"num_bins": self.num_bins, "from_logits": self.from_logits, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tfp_uq")
class BrierScore(keras.metrics.MeanMetricWrapper):
    """Multi-class Brier score, sum over classes of (p_k - 1[y = k])^2, averaged.

    Predictions are probabilities, or logits with `from_logits=True`.

    Example:

    >>> model.compile("adam", "sparse_categorical_crossentropy",
    ...               metrics=[tfp_uq.metrics.BrierScore()])
    """

    def __init__(self, from_logits=False, name="brier", dtype=None):
        self.from_logits = _validation.boolean("from_logits", from_logits)
        super().__init__(fn=_brier, name=name, dtype=dtype, from_logits=self.from_logits)
        self._direction = "down"

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name, "dtype": self.dtype}


def _brier(y_true, y_pred, from_logits=False):
    labels, probs = _labels_and_probs(y_true, y_pred, from_logits)
    onehot = ops.one_hot(labels, ops.shape(probs)[-1])
    return ops.sum(ops.square(probs - onehot), axis=-1)
