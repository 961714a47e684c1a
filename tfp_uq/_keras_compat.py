"""The private Keras APIs tfp_uq cannot do without, in one place.

Each function names the private attribute it reads and why no public API
serves; `tests/test_keras_compat.py` checks every one against the installed
Keras, so a Keras release that changes them fails there, loudly, instead of
deep inside a layer call.
"""

import contextlib

__all__ = ["history_of", "own_losses", "state_unlocked", "walk_layers"]


def walk_layers(layer, include_self=True):
    """Every layer inside `layer` (nested models, wrapped and custom sublayers), depth first.

    `Model.layers` lists only direct children of a Sequential or Functional
    model; layers held as attributes of custom layers (keras-hub blocks, a
    wrapper's `layer`) are reached only by Keras's own `_flatten_layers`.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def own_losses(layer):
    """The losses `layer` itself added with `add_loss` since Keras last cleared them.

    `layer.losses` also holds sublayers' losses and weight regularisers; a
    Bayesian layer asks for its own to add its KL term once per model call.
    """
    return layer._get_own_losses()


def history_of(tensor):
    """`(layer, node_index, tensor_index)` that made a symbolic tensor, or Nones.

    Keras keeps this only in `KerasTensor._keras_history`; the task rule
    reads it to find the layer (a softmax, a `GaussianHead`) behind an output.
    """
    return getattr(tensor, "_keras_history", (None, 0, 0))


@contextlib.contextmanager
def state_unlocked(model):
    """Allows attaching a new metric to an already built (locked) subclassed model.

    Keras locks a model's attribute tracking after `build`; the KL tracker is
    attached when `set_kl_weight` or a callback first sees the model.
    """
    tracker = model._tracker
    locked = tracker.locked
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            model._lock_state()
