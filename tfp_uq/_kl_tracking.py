"""Reporting the KL part of the ELBO in `fit` logs as `kl_loss`, and `posterior_std`.

One `KLTracker` metric per model, attached to the model (so Keras reports,
resets and aggregates it like any metric) and shared by its Bayesian layers,
which feed it their weighted KL in every train and test step. A
`PosteriorStd` metric beside it reports the mean posterior standard deviation
over the model's Bayesian weights after each step, so a posterior that does not
move is visible in the log.
"""

import math
import weakref

import keras

from tfp_uq import _caches, _keras_compat


class KLTracker(keras.metrics.Metric):
    """Mean over steps of the summed, weighted KL terms of a model's layers.

    Each layer adds its term and 1 / num_layers to the step count, so the
    result is the per-step total averaged over the epoch. Under
    `tf.distribute` each replica adds the unscaled term; the replica sums
    of total and count then still divide to the per-step total.
    """

    def __init__(self, num_layers, name="kl_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_layers = num_layers
        self.total = self.add_variable((), "zeros", name="total", aggregation="sum")
        self.count = self.add_variable((), "zeros", name="count", aggregation="sum")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, self.dtype))
        self.count.assign_add(1.0 / self.num_layers)

    def result(self):
        return self.total / keras.ops.maximum(self.count, 1e-12)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


class PosteriorStd(keras.metrics.Metric):
    """Mean posterior standard deviation over all Bayesian weights, read when reported.

    It holds no state: its result is the mean of every `posterior_scale` of the
    layers it was made for, at the moment Keras reads it (after the step's update).
    """

    def __init__(self, name="posterior_std", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, *args, **kwargs):
        del args, kwargs

    def result(self):
        total, count = 0.0, 0
        for reference in _caches.posterior_std_layers.get(self, ()):
            layer = reference()
            if layer is None:
                continue
            for name in layer.posteriors:
                scale = layer.posterior_scale(name)
                total = total + keras.ops.sum(scale)
                count += math.prod(scale.shape)
        return keras.ops.cast(total, "float32") / max(count, 1)

    def reset_state(self):
        pass


def _new_metric(model, factory):
    """`factory()`, made under the model's distribution strategy if it has one."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        return factory()
    with strategy.scope():
        return factory()


def report(layer, value):
    """Adds a layer's weighted KL term of this step to the tracker it feeds, if any."""
    tracker = _caches.kl_trackers.get(layer)
    # JAX's stateless train step cannot update a metric from a layer call.
    if tracker is not None and keras.backend.backend() != "jax":
        tracker.update_state(value)


def attach(model, layers):
    """Makes `model` report the KL of `layers` as `kl_loss` (and `posterior_std`); True if new."""
    tracker = getattr(model, "_tfp_uq_kl_tracker", None)
    if tracker is not None and tracker.num_layers == len(layers):
        return False
    tracker = _new_metric(model, lambda: KLTracker(len(layers)))
    with _keras_compat.state_unlocked(model):  # a built subclassed model
        model._tfp_uq_kl_tracker = tracker
    for layer in layers:
        _caches.kl_trackers[layer] = tracker
    with_scales = [layer for layer in layers if hasattr(layer, "posterior_scale")]
    # JAX's stateless metrics cannot read the layers' variables inside the step.
    if with_scales and keras.backend.backend() != "jax":
        posterior_std = _new_metric(model, PosteriorStd)
        _caches.posterior_std_layers[posterior_std] = [weakref.ref(layer) for layer in with_scales]
        with _keras_compat.state_unlocked(model):
            model._tfp_uq_posterior_std = posterior_std
    # Compiled steps traced before this point do not update the tracker.
    for attribute in ("train_function", "test_function"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)
    return True


def attach_for_training(model, layers):
    """`attach` from a callback's on_train_begin: retraces the train step if new."""
    if layers and attach(model, layers):
        model.make_train_function(force=True)


def add_elbo_terms(logs):
    """Adds `data_loss` = loss - kl_loss (and val_) to `logs` in place."""
    if logs is None:
        return
    for prefix in ("", "val_"):
        if f"{prefix}loss" in logs and f"{prefix}kl_loss" in logs:
            logs[f"{prefix}data_loss"] = float(logs[f"{prefix}loss"]) - float(logs[f"{prefix}kl_loss"])
