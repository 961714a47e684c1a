"""The task rule: whether a model's output is a classifier's or a regressor's.

One rule serves `tfp_uq.predict`, `tfp_uq.export`, `CalibrationLogger` and
HMC. An output is a classifier's when

- `from_logits` is set (by the caller, or by the model's compiled loss built
  with `from_logits=True`), or
- the model's structure says so: a softmax makes it, or a sigmoid over one
  unit (a binary classifier's P(class 1)), or it is the single one-unit
  output of a model compiled with a cross-entropy loss (a subclassed model, a
  sigmoid the layer graph hides), holding values in [0, 1] where they are
  known;
- or, for a model whose structure is not readable (a subclassed model
  without symbolic outputs), the sampled values are probabilities (several
  units, non-negative, summing to one).

An output made by a `GaussianHead` is a regressor's. Anything else is a
regressor's: pass `task="classification"` to say otherwise.
"""

import collections

import keras
import numpy as np

from tfp_uq import _keras_compat, _validation
from tfp_uq.layers.heads import GaussianHead

__all__ = ["TASKS", "OutputKind", "decide", "output_kinds", "output_task", "resolve_from_logits"]

TASKS = ("auto", "classification", "regression")

OutputKind = collections.namedtuple("OutputKind", ["gaussian", "classifier", "opaque"])
OutputKind.__doc__ = """What a model's structure says of one output.

gaussian: a `GaussianHead` makes it (`[loc, scale]` on the last axis).
classifier: its structure declares class probabilities (see the module).
opaque: the structure cannot be read (no symbolic output tensor), so the
    rule may look at the sampled values.
"""

_CLASSIFICATION_LOSSES = {
    "binarycrossentropy",
    "categoricalcrossentropy",
    "sparsecategoricalcrossentropy",
    "binaryfocalcrossentropy",
    "categoricalfocalcrossentropy",
}


def _output_tensors(model, count):
    """The model's `count` symbolic outputs, flattened (Nones for a subclassed model)."""
    try:
        tensors = list(model.outputs or ())  # Functional: flattened as keras.tree does
    except (AttributeError, ValueError):
        tensors = []
    return tensors if len(tensors) == count else [None] * count


def _producer(tensor):
    """The layer that makes a symbolic tensor, looking inside nested models and wrappers."""
    layer, _, index = _keras_compat.history_of(tensor)
    if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
        return _producer(keras.tree.flatten(layer.outputs)[index])
    # keras.layers.Wrapper (TimeDistributed, MCDropoutWrapper, ...): the wrapped layer.
    while isinstance(getattr(layer, "layer", None), keras.layers.Layer) and not hasattr(layer, "activation"):
        layer = layer.layer
    return layer


def _makes_probabilities(tensor):
    """Whether a symbolic output comes from a softmax, or a sigmoid over one unit (a binary classifier)."""
    layer = _producer(tensor)
    # keras.layers.Softmax, and keras.ops.softmax / sigmoid called on a symbolic tensor.
    kind = type(layer).__name__ if type(layer).__module__.startswith("keras") else None
    activation = getattr(layer, "activation", None)
    if kind == "Softmax" or activation is keras.activations.softmax:
        return True
    return (kind == "Sigmoid" or activation is keras.activations.sigmoid) and tensor.shape[-1] == 1


def _compiled_for_classification(model):
    """Whether the model was compiled with a cross-entropy loss (by name, function or object)."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", None)
    return isinstance(name, str) and name.replace("_", "").lower() in _CLASSIFICATION_LOSSES


def resolve_from_logits(model, from_logits):
    """`from_logits` checked; None: whether the model's compiled loss takes logits.

    A loss built with `from_logits=True` (e.g.
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`) says so;
    a loss given by name or as a plain function takes probabilities.
    """
    if from_logits is not None:
        return _validation.boolean("from_logits", from_logits)
    loss = getattr(model, "loss", None)
    try:
        return bool(loss.get_config().get("from_logits", False))
    except (AttributeError, NotImplementedError, TypeError):
        return False


def output_kinds(model, count, compiled_model=None):
    """Per flattened output of `model` (`count` of them), its `OutputKind`.

    Args:
        model: the Keras model whose layers make the outputs.
        count: its number of flattened outputs.
        compiled_model: the model whose compiled loss counts (default `model`;
            a `DeepEnsemble` is compiled, its members make the outputs).
    """
    compiled_model = model if compiled_model is None else compiled_model
    tensors = _output_tensors(model, count)
    kinds = []
    for tensor in tensors:
        if tensor is None:
            layers = getattr(model, "layers", None)
            gaussian = count == 1 and bool(layers) and isinstance(layers[-1], GaussianHead)
            single_unit = count == 1  # its width is known only from the samples
        else:
            gaussian = isinstance(_producer(tensor), GaussianHead)
            single_unit = count == 1 and tensor.shape[-1] == 1
        declared = tensor is not None and _makes_probabilities(tensor)
        declared = declared or (single_unit and _compiled_for_classification(compiled_model))
        kinds.append(OutputKind(gaussian=gaussian, classifier=declared, opaque=tensor is None))
    return kinds


def _looks_like_probabilities(samples):
    return samples.shape[-1] > 1 and np.all(samples >= 0) and np.allclose(samples.sum(axis=-1), 1.0, atol=1e-3)


def decide(task, kind, from_logits=False, samples=None):
    """The task of one output: "classification" or "regression".

    Args:
        task: "classification", "regression" or "auto" (the rule of this module).
        kind: the output's `OutputKind`.
        from_logits: the outputs are logits.
        samples: the sampled outputs `(num_samples, batch, ...)` when known
            (prediction), or None (export, from the structure alone).
    """
    _validation.one_of("task", task, TASKS)
    if task != "auto":
        return task
    if from_logits:
        return "classification"
    if kind.gaussian:
        return "regression"
    if kind.classifier:
        single_unit = samples is not None and samples.shape[-1] == 1
        if not single_unit or np.all((samples >= 0) & (samples <= 1)):
            return "classification"
    if samples is not None and kind.opaque and _looks_like_probabilities(samples):
        return "classification"
    return "regression"


def output_task(model, from_logits=False):
    """The task of a one-output model's output, from its structure alone."""
    return decide("auto", output_kinds(model, 1)[0], from_logits)
