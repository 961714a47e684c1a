"""KL annealing: ramp the weight of the KL term during `fit`."""

import math

import keras

from tfp_uq import _kl_tracking, _validation
from tfp_uq.elbo import bayesian_layers

__all__ = ["KLAnnealing"]


SCHEDULES = ("linear", "cyclical", "sigmoid", "constant")
UPDATE_PER = ("step", "epoch")


class KLAnnealing(keras.callbacks.Callback):
    """Multiplies each Bayesian layer's KL weight by a schedule beta(t).

    Each layer's KL term is weighted by `base * beta(t)`, where `base` is
    the layer's `kl_weight` (normally 1 / N) and t counts training steps
    (`update_per="step"`, read from the optimizer's iteration counter) or
    epochs. Schedules, with m = `max_weight`, w = `warmup`:

    - "linear":   beta = m min(1, t / w)
    - "cyclical": beta = m min(1, tau / (r c)), tau = t mod c, with
      c = `cycle_length` and r = `cycle_ratio` (Fu et al. 2019)
    - "sigmoid":  beta = m / (1 + exp(-10 (t / w - 1/2)))
    - "constant": beta = m
    - a callable: beta = schedule(t)

    The current beta is written to `logs` as `kl_weight` at the end of each
    epoch (so `History`, `CSVLogger` and TensorBoard show it), together with
    the ELBO's parts `kl_loss` and `data_loss`. Because t comes from the
    optimizer's counter (or the epoch number Keras resumes from), a run
    resumed with `keras.callbacks.BackupAndRestore`, or a model reloaded
    with its optimizer, continues the schedule where it stopped. With
    `compile(steps_per_execution=k)` Keras runs callbacks between executions,
    so a per-step beta changes every k steps (the schedule's value at the
    first step of each execution).

    Args:
        schedule: a name above or a callable of t returning beta >= 0.
        warmup: steps (or epochs) of the linear / sigmoid ramp, >= 0.
        max_weight: the largest beta, >= 0.
        update_per: "step" or "epoch".
        cycle_length: period of the cyclical schedule, in steps or epochs.
        cycle_ratio: fraction of each cycle spent increasing, in (0, 1].
        num_examples: if given, sets every layer's base weight to 1 / N.
        layers: layers (or their names) to anneal; default all Bayesian
            layers of the model.

    Example:

    >>> annealing = tfp_uq.callbacks.KLAnnealing("linear", warmup=2000,
    ...                                          num_examples=len(x_train))
    >>> model.fit(x_train, y_train, epochs=20, callbacks=[annealing])
    """

    def __init__(
        self,
        schedule="linear",
        warmup=1000,
        max_weight=1.0,
        update_per="step",
        cycle_length=None,
        cycle_ratio=0.5,
        num_examples=None,
        layers=None,
    ):
        super().__init__()
        if not callable(schedule):
            _validation.one_of("schedule", schedule, SCHEDULES)
        self.schedule = schedule
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)):
            raise TypeError(f"warmup must be a number of steps or epochs, got {warmup!r}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.warmup = warmup
        self.max_weight = _validation.non_negative("max_weight", max_weight)
        self.update_per = _validation.one_of("update_per", update_per, UPDATE_PER)
        if schedule == "cyclical":
            self.cycle_length = _validation.positive_int("cycle_length", cycle_length)
        else:
            self.cycle_length = cycle_length
        self.cycle_ratio = _validation.real("cycle_ratio", cycle_ratio)
        if not 0 < self.cycle_ratio <= 1:
            raise ValueError(f"cycle_ratio must be in (0, 1], got {cycle_ratio}")
        self.num_examples = None if num_examples is None else _validation.positive_int("num_examples", num_examples)
        self.layer_selection = layers
        self.current = None
        self._bases = {}

    def value(self, t):
        """beta(t), the multiplier of every annealed layer's base weight."""
        m = self.max_weight
        if callable(self.schedule):
            beta = float(self.schedule(t))
            if not (math.isfinite(beta) and beta >= 0):
                raise ValueError(f"the schedule returned {beta} at t={t}; it must be finite and >= 0")
            return beta
        if self.schedule == "constant":
            return m
        if self.schedule == "linear":
            return m if self.warmup == 0 else m * min(1.0, t / self.warmup)
        if self.schedule == "sigmoid":
            if self.warmup == 0:
                return m
            return m / (1.0 + math.exp(-10.0 * (t / self.warmup - 0.5)))
        tau = t % self.cycle_length
        return m * min(1.0, tau / (self.cycle_ratio * self.cycle_length))

    def _layers(self):
        layers = bayesian_layers(self.model)
        if self.layer_selection is None:
            return layers
        chosen = []
        for item in self.layer_selection:
            matches = [layer for layer in layers if layer is item or layer.name == item]
            if not matches:
                raise ValueError(f"layers: {item!r} is not a Bayesian layer of the model")
            chosen.extend(matches)
        return chosen

    def on_train_begin(self, logs=None):
        layers = self._layers()
        if not layers:
            raise ValueError("KLAnnealing: the model has no tfp_uq Bayesian layers")
        self._bases = {}
        for layer in layers:
            if self.num_examples is not None:
                layer.kl_weight = 1.0 / self.num_examples
            if layer.kl_weight is None:
                raise ValueError(
                    f"KLAnnealing: layer {layer.name!r} has no kl_weight; pass "
                    "num_examples=N to KLAnnealing or call tfp_uq.set_kl_weight first"
                )
            self._bases[layer] = layer.kl_weight
        _kl_tracking.attach_for_training(self.model, bayesian_layers(self.model))
        self._apply(self._step() if self.update_per == "step" else 0)

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _apply(self, t):
        self.current = self.value(t)
        for layer, base in self._bases.items():
            layer.kl_weight_variable.assign(base * self.current)

    def on_train_batch_begin(self, batch, logs=None):
        if self.update_per == "step":
            self._apply(self._step())

    def on_epoch_begin(self, epoch, logs=None):
        if self.update_per == "epoch":
            self._apply(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = self.current
        _kl_tracking.add_elbo_terms(logs)
