"""Calibration metrics on validation data, logged during `fit`."""

import io
import os
import warnings

import keras
import numpy as np

from tfp_uq import _datasets, _inputs, _kl_tracking, _validation, metrics, prediction
from tfp_uq import task as _task
from tfp_uq.elbo import bayesian_layers
from tfp_uq.posterior import as_posterior

__all__ = ["CalibrationLogger"]


METRICS = {
    "classification": ("accuracy", "nll", "brier", "ece"),
    "regression": ("rmse", "nll", "crps", "picp"),
}


def _classification_metrics(result, y, num_bins):
    labels = np.asarray(y)
    return {
        "accuracy": metrics.accuracy(result.probs, labels),
        "nll": metrics.negative_log_likelihood(result.probs, labels),
        "brier": metrics.brier_score(result.probs, labels),
        "ece": metrics.expected_calibration_error(result.probs, labels, num_bins),
    }


def _regression_metrics(result, y):
    y = np.asarray(y, dtype="float64").reshape(result.mean.shape)
    std = np.maximum(result.std, 1e-12)
    return {
        "rmse": metrics.rmse(y, result.mean),
        "nll": metrics.gaussian_nll(y, result.mean, std),
        "crps": metrics.crps_gaussian(y, result.mean, std),
        "picp": metrics.picp(y, result.mean, std, level=0.95),
    }


def _first_input(x):
    """The first input array of x (an array, or a list, tuple or dict of them)."""
    if isinstance(x, dict):
        return next(iter(x.values()))
    return x[0] if isinstance(x, (list, tuple)) else x


class CalibrationLogger(keras.callbacks.Callback):
    """Logs calibration metrics of the Monte Carlo predictive on validation data.

    Every `every` epochs it runs `tfp_uq.predict` on the validation data and
    writes `val_<metric>` into `logs` (classification: accuracy, nll, brier,
    ece; regression: rmse, nll, crps, picp at 95%), so `History`,
    `CSVLogger`, `ModelCheckpoint` and `EarlyStopping(monitor="val_ece")` see
    them (replacing, with a warning, Keras' own values of the same names):
    put this callback before those in the list, and give them
    `mode="min"` (or "max" for accuracy and PICP), since Keras cannot infer the
    direction of a value that no compiled metric reports. It also adds the ELBO's
    parts, `kl_loss` and `data_loss`. With `log_dir` the scalars and a
    reliability diagram (regression: calibration curve) go to TensorBoard;
    with `png_dir` the figure is also saved as a PNG per logged epoch.

    Args:
        validation_data: `(x, y)`, x an array or a list or dict of arrays, y
            integer or one-hot labels or regression targets; or a batched
            `tf.data.Dataset` or `keras.utils.PyDataset` of `(x, y)` (read
            once, when the callback is made).
        num_samples: Monte Carlo samples per prediction (positive integer).
        every: log every this many epochs (positive integer).
        metrics: names to log (default: all for the task).
        task: "classification", "regression" or "auto".
        log_dir: TensorBoard folder (scalars and images go to `log_dir/calibration`).
        png_dir: folder for one PNG per logged epoch.
        num_bins: ECE bins.
        seed: seed of the Monte Carlo draws (same draws every epoch).
        jit_compile: run the predictions under XLA (None: as `tfp_uq.predict`).
        from_logits: the model outputs logits (None: as its compiled loss
            says, as in `tfp_uq.predict`).

    Example:

    >>> logger = tfp_uq.callbacks.CalibrationLogger((x_val, y_val), num_samples=20)
    >>> stop = keras.callbacks.EarlyStopping(monitor="val_ece", mode="min", patience=3)
    >>> model.fit(x, y, epochs=50, callbacks=[logger, stop])
    """

    def __init__(
        self,
        validation_data,
        num_samples=20,
        every=1,
        metrics=None,
        task="auto",
        log_dir=None,
        png_dir=None,
        num_bins=15,
        seed=0,
        jit_compile=None,
        from_logits=None,
    ):
        super().__init__()
        if _datasets.is_dataset(validation_data):
            kind = _datasets.kind(validation_data)
            validation_data = _datasets.to_arrays(validation_data, "validation_data")
            if validation_data[1] is None:
                raise ValueError(f"validation_data: the {kind} must yield (x, y) tuples")
        _datasets.check_not_iterator(validation_data, "validation_data")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                "validation_data must be a tuple (x, y) or a batched tf.data.Dataset or "
                f"keras.utils.PyDataset of them, got {type(validation_data).__name__}"
            )
        x, y = validation_data
        x_first = _first_input(x)
        if len(x_first) != len(y) or len(y) == 0:
            raise ValueError(
                f"validation_data: x and y must have the same non-zero length, got {len(x_first)} and {len(y)}"
            )
        bad = _inputs.nonfinite_rows(_inputs.as_inputs(x)[0])
        if bad.any():
            raise ValueError(
                f"validation_data: x has NaN or infinite values in {_inputs.describe_rows(bad)}; drop or fill them"
            )
        self.x, self.y = x, np.asarray(y)
        self.num_samples = _validation.positive_int("num_samples", num_samples)
        self.every = _validation.positive_int("every", every)
        self.task = _validation.one_of("task", task, _task.TASKS)
        allowed = sorted(set(METRICS["classification"]) | set(METRICS["regression"]))
        if metrics is not None:
            for name in metrics:
                _validation.one_of("metrics", name, allowed)
        self.metric_names = None if metrics is None else tuple(metrics)
        self.log_dir, self.png_dir = log_dir, png_dir
        self.num_bins = _validation.positive_int("num_bins", num_bins)
        self.seed = _validation.optional_int("seed", seed)
        self.jit_compile = None if jit_compile is None else _validation.boolean("jit_compile", jit_compile)
        self.from_logits = None if from_logits is None else _validation.boolean("from_logits", from_logits)
        self._writer = None
        self._warned_replacing = False

    def on_train_begin(self, logs=None):
        if not isinstance(self.x, dict):
            arrays = list(self.x) if isinstance(self.x, (list, tuple)) else [self.x]
            _inputs.check_input_shapes(as_posterior(self.model).input_tensors, arrays, "validation_data: x")
        _kl_tracking.attach_for_training(self.model, bayesian_layers(self.model))
        if self.png_dir:
            os.makedirs(self.png_dir, exist_ok=True)
        if self.log_dir and self._writer is None:
            try:
                import tensorboard  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    "CalibrationLogger(log_dir=...) needs TensorBoard: pip install tensorboard"
                ) from error
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "calibration"))

    def compute(self):
        """Runs the predictive on the validation data; returns (values, result)."""
        result = prediction.predict(
            self.model,
            self.x,
            num_samples=self.num_samples,
            seed=self.seed,
            task=self.task,
            jit_compile=self.jit_compile,
            from_logits=self.from_logits,
            on_nonfinite="refer",  # a diverged model is logged, not raised
        )
        if not isinstance(result, prediction.PredictionResult):
            raise ValueError(
                "CalibrationLogger needs a model with one output; this model has several. Log one "
                "keras.Model(model.inputs, output) per output."
            )
        if not np.all(np.isfinite(result.mean)):
            # A diverged model: log NaN, as Keras logs a NaN loss, rather than stop training.
            values = dict.fromkeys(METRICS[result.task], float("nan"))
        elif result.task == "classification":
            values = _classification_metrics(result, self.y, self.num_bins)
        else:
            values = _regression_metrics(result, self.y)
        names = self.metric_names or METRICS[result.task]
        unknown = [n for n in names if n not in values]
        if unknown:
            raise ValueError(f"metrics {unknown} do not apply to {result.task}; allowed: {METRICS[result.task]}")
        return {name: values[name] for name in names}, result

    def on_epoch_end(self, epoch, logs=None):
        _kl_tracking.add_elbo_terms(logs)
        if (epoch + 1) % self.every:
            return
        values, result = self.compute()
        if logs is not None:
            replaced = sorted(f"val_{name}" for name in values if f"val_{name}" in logs)
            if replaced and not self._warned_replacing:
                self._warned_replacing = True
                warnings.warn(
                    f"CalibrationLogger replaces {replaced} in the logs (one stochastic pass on fit's validation "
                    "data) with the Monte Carlo predictive's on its own validation_data; pass "
                    "metrics=[...] without them to keep Keras' values.",
                    stacklevel=2,
                )
            logs.update({f"val_{name}": value for name, value in values.items()})
        figure = None
        if (self.png_dir or self._writer is not None) and np.all(np.isfinite(result.mean)):
            figure = self._figure(result, epoch)
        if figure is not None and self.png_dir:
            figure.savefig(os.path.join(self.png_dir, f"calibration_epoch_{epoch + 1:03d}.png"))
        if self._writer is not None:
            self._write_tensorboard(values, figure, epoch)

    def _figure(self, result, epoch):
        try:
            from tfp_uq import plots
        except ImportError:
            return None
        title = f"epoch {epoch + 1}"
        if result.task == "classification":
            return plots.reliability_diagram(
                result.probs, self.y.reshape(-1), self.num_bins, title=f"Reliability, {title}"
            )
        y = self.y.astype("float64").reshape(result.mean.shape)
        return plots.calibration_curve(y, result.mean, np.maximum(result.std, 1e-12), title=f"Calibration, {title}")

    def _write_tensorboard(self, values, figure, epoch):
        import tensorflow as tf

        with self._writer.as_default(step=epoch):
            for name, value in values.items():
                tf.summary.scalar(f"val_{name}", value)
            if figure is not None:
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png")
                image = tf.image.decode_png(buffer.getvalue(), channels=4)
                tf.summary.image("calibration", image[None], max_outputs=1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
