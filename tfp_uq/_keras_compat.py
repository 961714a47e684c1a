"""The private Keras APIs tfp_uq cannot do without, in one place.

Each function names the private attribute it reads and why no public API
serves; `tests/test_keras_compat.py` checks every one against the installed
Keras, so a Keras release that changes them fails there, loudly, instead of
deep inside a layer call.
"""

import contextlib

__all__ = [
    "bookkeeping",
    "history_of",
    "in_graph",
    "own_losses",
    "register_name",
    "replace_sublayer",
    "state_unlocked",
    "sublayers",
    "walk_layers",
]


def walk_layers(layer, include_self=True):
    """Every layer inside `layer` (nested models, wrapped and custom sublayers), depth first.

    `Model.layers` lists only direct children of a Sequential or Functional
    model; layers held as attributes of custom layers (keras-hub blocks, a
    wrapper's `layer`) are reached only by Keras's own `_flatten_layers`.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def sublayers(layer):
    """The layers Keras records as `layer`'s direct children (attributes, their lists and dicts, a graph)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


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


# Attributes in which Keras keeps a layer's (or a functional model's graph's)
# own records of its sublayers; `replace_sublayer` updates them.
_GRAPH_ATTRIBUTES = ("_operations", "_operations_by_depth")


def bookkeeping(layer):
    """The ids of the containers in which Keras records `layer`'s sublayers and graph (not user attributes).

    They are the tracker's stores (`_tracker.config`) and, for a functional
    model, its operation lists; a search of a layer's attributes for a
    sublayer skips them and leaves them to `replace_sublayer`.
    """
    ids = {id(store) for _, store in layer._tracker.config.values()} if hasattr(layer, "_tracker") else set()
    for name in _GRAPH_ATTRIBUTES:
        value = layer.__dict__.get(name)
        if value is not None:
            ids.add(id(value))
            if isinstance(value, dict):
                ids.update(id(v) for v in value.values())
    return ids


def in_graph(parent, layer):
    """Whether `layer` is an operation of `parent`'s functional graph (Keras keeps no public list of them)."""
    return any(op is layer for op in parent.__dict__.get("_operations", ()))


def replace_sublayer(parent, old, new):
    """Puts `new` where Keras records `old` as a sublayer of `parent`: its tracker and graph.

    The tracker's store keeps its order (so the variables' order is kept);
    in a functional model's graph, the nodes that called `old` are handed to
    `new` and their outputs say `new` made them, so the model runs, saves
    and summarises `new` without being rebuilt. Keras offers no public way
    to swap a layer inside a built model.
    """
    tracker = getattr(parent, "_tracker", None)
    if tracker is not None and tracker.is_in_store("layers", old):
        if tracker.is_in_store("layers", new):
            tracker.untrack(old)
        else:
            tracker.replace_tracked_value("layers", old, new)
    if not in_graph(parent, old):
        return
    operations = parent.__dict__["_operations"]
    operations[:] = [new if op is old else op for op in operations]
    for depth_operations in parent.__dict__.get("_operations_by_depth", {}).values():
        depth_operations[:] = [new if op is old else op for op in depth_operations]
    new._inbound_nodes = list(old._inbound_nodes)
    new._outbound_nodes = list(old._outbound_nodes)
    for node in new._inbound_nodes:
        node.operation = new
        for tensor in node.outputs:
            tensor._keras_history = tensor._keras_history._replace(operation=new)


def register_name(cls, name):
    """Makes Keras serialise instances of `cls` under the registered name `name`.

    For a class made at run time (a model converted in place,
    `tfp_uq.convert`), which `keras.saving.register_keras_serializable`
    would register as the object to deserialise `name` with: here the
    registered object stays the static class that restores the conversion.
    """
    from keras.src.saving import object_registration

    object_registration.GLOBAL_CUSTOM_NAMES[cls] = name
