"""ELBO monitor: warn when a Bayesian model's training loss goes uphill."""

import math
import warnings

import keras

from tfp_uq import _validation
from tfp_uq.elbo import bayesian_layers

__all__ = ["ELBOMonitor"]


class ELBOMonitor(keras.callbacks.Callback):
    """Warns once when an epoch's training loss ends more than `margin` above its best.

    For a Bayesian model the training loss is the negative ELBO per example
    (mean NLL + KL / N). Longer training should not end at a worse ELBO; when an
    epoch's loss is more than `margin` nats above the lowest epoch loss so far
    (or is not finite), the run has gone uphill: a learning rate too high for
    the posterior, a heavy-tailed gradient, a collapse of the posterior to its
    prior. The warning names the epoch and the numbers. The best loss restarts
    whenever a layer's KL weight changes (`KLAnnealing` changes the objective
    on purpose), and the monitor does nothing for a model without Bayesian
    layers.

    Args:
        margin: nats per example above the best epoch loss that count as uphill (> 0).
        monitor: the log entry to watch (default "loss").

    Example:

    >>> model.fit(x_train, y_train, epochs=400, callbacks=[tfp_uq.callbacks.ELBOMonitor()])
    """

    def __init__(self, margin=1.0, monitor="loss"):
        super().__init__()
        self.margin = _validation.positive_finite("margin", margin)
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be the name of a log entry (a non-empty string), got {monitor!r}")
        self.monitor = monitor
        self.warned = False

    def on_train_begin(self, logs=None):
        self._layers = bayesian_layers(self.model)
        self._best, self._best_epoch, self._kl_weights = math.inf, None, None

    def _current_kl_weights(self):
        return tuple(float(keras.ops.convert_to_numpy(layer.kl_weight_variable)) for layer in self._layers)

    def on_epoch_end(self, epoch, logs=None):
        if not self._layers or self.warned or not logs or self.monitor not in logs:
            return
        loss = float(logs[self.monitor])
        kl_weights = self._current_kl_weights()
        if kl_weights != self._kl_weights:
            self._best, self._best_epoch, self._kl_weights = math.inf, None, kl_weights
        if math.isfinite(loss) and loss <= self._best + self.margin:
            if loss < self._best:
                self._best, self._best_epoch = loss, epoch + 1
            return
        self.warned = True
        best = (
            ""
            if self._best_epoch is None
            else f", {loss - self._best:.3g} above its best {self._best:.4g} at epoch {self._best_epoch}"
        )
        warnings.warn(
            f"ELBOMonitor: epoch {epoch + 1} ended with training {self.monitor} {loss:.4g}{best} "
            f"(margin {self.margin:g}): training went uphill. Lower the learning rate or clip the "
            "gradients (e.g. keras.optimizers.Adam(learning_rate, global_clipnorm=1.0)).",
            stacklevel=2,
        )
