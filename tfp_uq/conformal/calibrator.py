"""Split conformal calibration on top of any tfp_uq predictor."""

import dataclasses
import json
import os

import keras
import numpy as np
from keras import ops

from tfp_uq import _random, _validation, prediction
from tfp_uq.conformal import quantile as _quantile
from tfp_uq.conformal import scores as _scores
from tfp_uq.posterior import Posterior, as_posterior

__all__ = ["ConformalCalibrator", "calibrate"]

FORMAT = "tfp_uq.conformal/1"
# Sub-streams of a call's [2] seed for the randomized scores' uniform draws:
# calibration and prediction draw from different ones, so that a new input's
# noise never repeats a calibration point's.
_CALIBRATION_NOISE_STREAM = 1
_PREDICTION_NOISE_STREAM = 2
# A class whose score equals the threshold stays in the set although float32
# may have summed its probabilities in another order than at calibration.
_TIE_TOLERANCE = 1e-6
_SUMMARY_FIELDS = ("mean", "probs", "variance", "aleatoric_variance", "epistemic_variance")


def _posterior(predictor):
    try:
        return as_posterior(predictor)
    except TypeError as error:
        raise TypeError(f"predictor: {error}") from None


def _predictive(posterior, x, num_samples, seed, predict_kwargs, inputs):
    """The `PredictionResult` of `posterior` on `x`, checked to be of one output and finite.

    `inputs` names `x` in errors.
    """
    # Rows that are not finite are marked, not raised on, so that the error can name the arguments.
    predict_kwargs = {"on_nonfinite": "refer", **predict_kwargs}
    result = prediction.predict(posterior, x, num_samples=num_samples, seed=seed, **predict_kwargs)
    if not isinstance(result, prediction.PredictionResult):
        raise ValueError(
            "predictor has several outputs; conformal calibration takes one: calibrate "
            "keras.Model(model.inputs, output) for the output to cover"
        )
    if result.nonfinite is not None and result.nonfinite.any():
        rows = np.flatnonzero(result.nonfinite)
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"predictor: the predictions on {inputs} are not finite (NaN or inf) in rows {shown} ({len(rows)} of "
            f"{len(result.nonfinite)}): {inputs} holds NaN or infinite values there, or the weights diverged"
        )
    return result


def _fields(result, source, inputs):
    """The result's summary arrays, checked finite; `source` and `inputs` name them in errors."""
    if not isinstance(result, prediction.PredictionResult):
        raise TypeError(f"{source} must be a tfp_uq.PredictionResult, got {type(result).__name__}")
    fields = {name: np.asarray(getattr(result, name)) for name in _SUMMARY_FIELDS if getattr(result, name) is not None}
    for name, value in fields.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{source}: the predictions on {inputs} are not finite (NaN or inf in {name!r})")
    return fields


def _tensors(fields):
    """NumPy summaries as tensors, float64 where the backend has it (not JAX without x64); tensors as they are."""
    return {
        name: ops.convert_to_tensor(prediction._summary_input(value)) if isinstance(value, np.ndarray) else value
        for name, value in fields.items()
    }


def _seed_tensor(seed):
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    # As tfp_uq.predict passes seeds to a posterior: int64 on TensorFlow, uint32 (JAX's keys) elsewhere.
    dtype = "int64" if keras.backend.backend() == "tensorflow" else "uint32"
    return ops.convert_to_tensor([seed & 0x7FFFFFFF, 0], dtype=dtype)


def _noise(size, seed, stream, dtype):
    return _random.uniform((size,), _random.substream(seed, stream), dtype=dtype)


def _labels(y, n, num_classes):
    """Integer class labels `(n,)` from labels `(n,)`, `(n, 1)` or one-hot `(n, num_classes)`."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape == (n, num_classes) and num_classes > 1:
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError(f"y_cal of shape {y.shape} must be one-hot (a single 1 per row) or integer labels")
        y = y.argmax(axis=1)
    y = y.reshape(-1) if y.size == n else y
    if y.shape != (n,):
        raise ValueError(f"y_cal must hold one class label per calibration input, shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iuf" or not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
        raise ValueError(f"y_cal must hold integer class labels in [0, {num_classes - 1}]")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"y_cal must hold class labels in [0, {num_classes - 1}] (the predictor has {num_classes} classes), "
            f"got values in [{y.min():g}, {y.max():g}]"
        )
    return y.astype("int64")


def _targets(y, shape):
    """Regression targets of `shape` (a size-preserving reshape is allowed), checked finite."""
    try:
        y = np.asarray(y, dtype="float64")
    except (TypeError, ValueError) as error:
        raise TypeError(f"y_cal must be an array of numbers: {error}") from None
    if y.shape != shape:
        if y.size != int(np.prod(shape)):
            raise ValueError(f"y_cal must have shape {shape} to match the predictions, got {y.shape}")
        y = y.reshape(shape)
    if not np.all(np.isfinite(y)):
        raise ValueError("y_cal must be finite (no NaN or inf)")
    return y


def _auto_score(task, fields):
    """LAC for classification; for regression the normalized residual when the predictive std is positive everywhere."""
    if task == "classification":
        return _scores.LAC()
    if "variance" in fields and np.all(fields["variance"] > 0):
        return _scores.NormalizedResidual()
    return _scores.AbsoluteResidual()


def _calibration_groups(groups, y, task, num_classes):
    """`(labels, index, count)`: None, "class" or the sorted group labels, each point's group index, the groups."""
    if groups is None:
        return None, np.zeros(len(y), dtype="int64"), 1
    if isinstance(groups, str):
        if groups != "class":
            raise ValueError(f"groups must be None, 'class' or one label per calibration input, got {groups!r}")
        if task != "classification":
            raise ValueError("groups='class' (class-conditional calibration) needs a classifier")
        return "class", y, num_classes
    groups = np.asarray(groups)
    if groups.shape != (len(y),):
        raise ValueError(f"groups must hold one label per calibration input, shape ({len(y)},), got {groups.shape}")
    if groups.dtype.kind == "O" and all(isinstance(label, str) for label in groups.tolist()):
        groups = groups.astype(str)  # e.g. a pandas column of strings
    if groups.dtype.kind not in "iuU":
        raise ValueError(f"groups must be integer or string labels, got dtype {groups.dtype}")
    labels, index = np.unique(groups, return_inverse=True)
    return labels.tolist(), index, len(labels)


def _group_quantiles(values, index, count, coverage, labels):
    """The conformal quantile of the calibration scores of each group, and each group's size."""
    quantiles, sizes = [], []
    needed = _quantile.minimum_calibration_size(coverage)
    for g in range(count):
        members = values[index == g]
        if len(members) < needed:
            if labels is None:
                raise ValueError(
                    f"x_cal and y_cal hold {len(members)} calibration points; coverage={coverage!r} needs at least "
                    f"{needed} (the conformal quantile is the ceil((n + 1) * coverage)-th smallest of n scores)"
                )
            what = f"class {g}" if labels == "class" else f"group {labels[g]!r}"
            name = "y_cal" if labels == "class" else "groups"
            raise ValueError(
                f"{name}: {what} has {len(members)} calibration points; coverage={coverage!r} needs at least "
                f"{needed} per {'class' if labels == 'class' else 'group'}"
            )
        quantiles.append(_quantile.conformal_quantile(members, coverage))
        sizes.append(len(members))
    return np.asarray(quantiles, dtype="float64"), sizes


def _fit(result, y_cal, coverage, score, groups, seed, source):
    """`(score, quantiles, groups, num_calibration)` from calibration predictions and targets."""
    fields = _fields(result, source, "x_cal")
    score = _auto_score(result.task, fields) if score == "auto" else _scores.get(score)
    if score.task != result.task:
        raise ValueError(
            f"score: {score!r} is a {score.task} score, but the predictor's outputs are a {result.task} "
            f"(pass task= to tfp_uq.predict through calibrate's keyword arguments if that is wrong)"
        )
    score.check(fields)
    tensors = _tensors(fields)
    if score.task == "classification":
        n, num_classes = fields["probs"].shape
        y = _labels(y_cal, n, num_classes)
        noise = None
        if score.randomized:
            noise = _noise(n, _seed_tensor(seed), _CALIBRATION_NOISE_STREAM, tensors["probs"].dtype)
        class_scores = ops.convert_to_numpy(score.class_scores(tensors["probs"], noise))
        values = class_scores[np.arange(n), y]
        labels, index, count = _calibration_groups(groups, y, score.task, num_classes)
    else:
        y = _targets(y_cal, score.target_shape(fields["mean"].shape))
        values = ops.convert_to_numpy(score.scores(tensors, ops.convert_to_tensor(prediction._summary_input(y))))
        labels, index, count = _calibration_groups(groups, y, score.task, None)
    quantiles, sizes = _group_quantiles(np.asarray(values, dtype="float64"), index, count, coverage, labels)
    return score, quantiles, labels, sizes


@keras.saving.register_keras_serializable(package="tfp_uq")
class ConformalCalibrator(Posterior):
    """Intervals or sets with a finite-sample coverage guarantee, on top of any tfp_uq predictor.

    Split conformal prediction (Vovk et al. 2005; Lei et al. 2018): the
    scores s_i of n held-out calibration points give the threshold q, their
    k-th smallest with k = ceil((n + 1)(1 - alpha)), and a new input's
    interval or set holds every target whose score is at most q. When the
    calibration points and the new one are exchangeable (e.g. i.i.d.), the
    target falls inside with probability at least 1 - alpha over both draws,
    however good or bad the model; at most 1 - alpha + 1 / (n + 1) when the
    scores have no ties. Mondrian calibration (Vovk et al. 2005) repeats this
    within each group, or each class, so that the guarantee holds per group.

    Made by `calibrate`, `ConformalCalibrator.from_predictions` or `load`.
    A `tfp_uq.posterior.Posterior` that samples as its predictor does and
    adds the intervals or sets as `extra_fields`, so `tfp_uq.predict` and
    `tfp_uq.export` give them too (for a calibrator that needs neither a
    seed, as a randomized score does, nor group labels; `predict` takes
    both). `tfp_uq.posterior.save(calibrator, folder)` writes it with its
    predictor (model and posterior state); `save(path)` writes the
    calibrated constants alone.

    Attributes:
        predictor: what predicts (None after `from_predictions`).
        posterior: its `tfp_uq.posterior.Posterior` (None without predictor).
        score: the `tfp_uq.conformal.Score`.
        coverage: the promised coverage 1 - alpha.
        quantiles: the threshold per group: `(num_groups, ...)` for
            regression (one per target), `(num_groups,)` for classification
            (`num_groups` is the number of classes for groups="class", 1
            without groups).
        groups: None (marginal), "class" (class-conditional) or the sorted
            group labels.
        num_calibration: the calibration points per group.
        num_samples, predict_kwargs: how `predict` calls `tfp_uq.predict`.
    """

    def __init__(
        self,
        predictor,
        score,
        coverage,
        quantiles,
        groups=None,
        num_calibration=None,
        num_samples=100,
        predict_kwargs=None,
    ):
        self.predictor = predictor
        self.posterior = None if predictor is None else _posterior(predictor)
        if self.posterior is None:
            self.model = None  # made from predictions: apply() only
        else:
            super().__init__(self.posterior.model)
        self.score = _scores.get(score)
        self.coverage = _validation.open_unit_interval("coverage", coverage)
        self.quantiles = np.asarray(quantiles, dtype="float64")
        if self.quantiles.ndim == 0 or not np.all(np.isfinite(self.quantiles)):
            raise ValueError(f"quantiles must be a finite array (num_groups, ...), got {self.quantiles!r}")
        if isinstance(groups, str) and groups != "class":
            raise ValueError(f"groups must be None, 'class' or a list of group labels, got {groups!r}")
        expected = 1 if groups is None else None if groups == "class" else len(groups)
        if expected is not None and self.quantiles.shape[0] != expected:
            raise ValueError(
                f"quantiles must have one row per group ({expected} for groups={groups!r}), got shape "
                f"{self.quantiles.shape}"
            )
        self.groups = groups
        self.num_calibration = None if num_calibration is None else [int(n) for n in num_calibration]
        self.num_samples = _validation.positive_int("num_samples", num_samples)
        self.predict_kwargs = dict(predict_kwargs or {})

    @property
    def task(self):
        return self.score.task

    @classmethod
    def from_predictions(cls, result_cal, y_cal, coverage=0.9, score="auto", groups=None, seed=0):
        """Calibrates on predictions already made: a `PredictionResult` of the calibration inputs.

        The calibrator has no predictor: `apply` it to `PredictionResult`s.
        Arguments as for `calibrate`.

        Example:

        >>> calibrator = ConformalCalibrator.from_predictions(tfp_uq.predict(model, x_cal), y_cal)
        >>> calibrator.apply(tfp_uq.predict(model, x_test)).prediction_set
        """
        coverage = _validation.open_unit_interval("coverage", coverage)
        seed = _validation.optional_int("seed", seed)
        score, quantiles, labels, sizes = _fit(result_cal, y_cal, coverage, score, groups, seed, "result_cal")
        return cls(None, score, coverage, quantiles, labels, sizes)

    def predict(self, x, groups=None, seed=None):
        """The `PredictionResult` of `x` with its intervals (`lower`, `upper`) or sets (`prediction_set`, `set_size`).

        Args:
            x: inputs, as `tfp_uq.predict` takes them.
            groups: for a calibrator calibrated with group labels, the group
                of each input (labels seen at calibration); else None.
            seed: integer for reproducible Monte Carlo samples and, for a
                randomized score, set noise; None draws fresh ones.
        """
        seed = _validation.optional_int("seed", seed)
        result = _predictive(self._wrapped, x, self.num_samples, seed, self.predict_kwargs, "x")
        return self._apply(result, groups, seed, "predictor", "x")

    def apply(self, result, groups=None, seed=None):
        """The `PredictionResult` of new inputs with the intervals or sets added.

        Args as for `predict`; `seed` only draws a randomized score's noise.
        """
        return self._apply(result, groups, _validation.optional_int("seed", seed), "result", "its inputs")

    def _apply(self, result, groups, seed, source, inputs):
        fields = _fields(result, source, inputs)
        if result.task != self.task:
            raise ValueError(f"{source}: a {result.task} predictive, but the calibrator's score is for {self.task}")
        index = self.group_index(groups, len(fields["mean"]))
        extra = self.extra_fields(
            fields,
            self.task,
            seed=_seed_tensor(seed) if self.score.randomized else None,
            groups=None if index is None else ops.convert_to_tensor(index),
        )
        return dataclasses.replace(result, **{name: np.asarray(ops.convert_to_numpy(v)) for name, v in extra.items()})

    def group_index(self, groups, num_inputs=None):
        """Each input's group as an index into `self.groups` (int32), or None for a calibrator without groups.

        Raises a ValueError naming `groups` for labels not seen at calibration.
        """
        if self.groups is None or self.groups == "class":
            if groups is not None:
                kind = "marginal" if self.groups is None else "class-conditional"
                raise ValueError(f"groups: this calibrator is {kind} and takes no groups, got {groups!r}")
            return None
        if groups is None:
            raise ValueError(
                f"groups: this calibrator is group-conditional; give the group of each input, one of {self.groups}"
            )
        groups = np.asarray(groups)
        if groups.ndim != 1 or (num_inputs is not None and len(groups) != num_inputs):
            raise ValueError(f"groups must hold one label per input, shape ({num_inputs},), got {groups.shape}")
        position = {label: i for i, label in enumerate(self.groups)}
        unknown = sorted({label for label in groups.tolist() if label not in position}, key=str)
        if unknown:
            raise ValueError(f"groups: labels {unknown} were not among the calibration groups {self.groups}")
        return np.asarray([position[label] for label in groups.tolist()], dtype="int32")

    def _thresholds(self, groups, dtype):
        """The quantile of each input, broadcastable against its scores (keras.ops)."""
        quantiles = ops.convert_to_tensor(self.quantiles, dtype=dtype)
        if self.groups == "class":
            return quantiles  # (num_classes,): class k's threshold, against column k
        if self.groups is None:
            return quantiles[0]
        if groups is None:
            raise ValueError(
                f"groups: this calibrator is group-conditional; give each input's group index into {self.groups}"
            )
        count = len(self.groups)
        # An index out of range (a group never calibrated) gets an infinite threshold: all classes, (-inf, inf).
        table = ops.concatenate([quantiles, ops.full((1,) + tuple(self.quantiles.shape[1:]), np.inf, dtype)], axis=0)
        groups = ops.cast(groups, "int32")
        per_input = ops.take(table, ops.where((groups >= 0) & (groups < count), groups, count), axis=0)
        return ops.expand_dims(per_input, -1) if self.task == "classification" else per_input

    def extra_fields(self, fields, kind, seed=None, groups=None):
        """The intervals or sets from the predictive summaries, in `keras.ops` (traceable, stateless).

        This is the posterior protocol's hook: `tfp_uq.predict` and
        `tfp_uq.export` add its outputs to the result and to the serving
        signature.

        Args:
            fields: dict of summary tensors (or NumPy arrays), batch first:
                "mean" and "variance" / "epistemic_variance" (regression),
                "probs" (classification).
            kind: "classification" or "regression": the task of the
                summaries, which must be the score's.
            seed: `[2]`-shaped int32 seed tensor; a randomized score draws
                its per-input uniform noise from sub-stream
                `_PREDICTION_NOISE_STREAM` of it. Ignored otherwise.
            groups: int tensor `(n,)` of group indices into `self.groups`
                (see `group_index`) for a group-conditional calibrator; an
                index out of range gives the trivial interval or set.

        Returns:
            {"lower", "upper"} for regression; {"prediction_set" (bool
            `(n, num_classes)`), "set_size" (int32 `(n,)`)} for
            classification.
        """
        if kind != self.task:
            raise ValueError(f"kind: the summaries are of a {kind} output, but {self.score!r} is a {self.task} score")
        if self.score.randomized and seed is None:
            raise ValueError(
                f"seed: {self.score!r} is randomized and needs a [2] seed tensor for its noise; calibrator.predict(x, "
                "seed=...) passes one"
            )
        fields = _tensors(fields)
        if self.task == "regression":
            lower, upper = self.score.bounds(fields, self._thresholds(groups, fields["mean"].dtype))
            return {"lower": lower, "upper": upper}
        probs = fields["probs"]
        noise = None
        if self.score.randomized:
            noise = _noise(ops.shape(probs)[0], seed, _PREDICTION_NOISE_STREAM, probs.dtype)
        thresholds = self._thresholds(groups, probs.dtype)
        prediction_set = self.score.class_scores(probs, noise) <= thresholds + _TIE_TOLERANCE
        return {"prediction_set": prediction_set, "set_size": ops.sum(ops.cast(prediction_set, "int32"), axis=-1)}

    # The rest of the posterior protocol is the wrapped predictor's: calibration changes no sample.

    @property
    def _wrapped(self):
        if self.posterior is None:
            raise ValueError("this calibrator was made from predictions and has no predictor: use apply(result)")
        return self.posterior

    @property
    def deterministic(self):
        return self._wrapped.deterministic

    @property
    def random_samples(self):
        return self._wrapped.random_samples

    @property
    def max_samples_per_call(self):
        return self._wrapped.max_samples_per_call

    def sample_outputs(self, inputs, num_samples, seed):
        return self._wrapped.sample_outputs(inputs, num_samples, seed)

    def resolve_num_samples(self, requested):
        return self._wrapped.resolve_num_samples(requested)

    def output_kinds(self, count):
        return self._wrapped.output_kinds(count)

    def resolve_from_logits(self, from_logits):
        return self._wrapped.resolve_from_logits(from_logits)

    @property
    def input_tensors(self):
        return self._wrapped.input_tensors

    @property
    def has_exact_fields(self):
        return self._wrapped.has_exact_fields

    def exact_fields(self, inputs):
        # The predictor's closed-form summaries, which calibration used too.
        return self._wrapped.exact_fields(inputs)

    def fresh_seed(self):
        return self._wrapped.fresh_seed()

    def get_config(self):
        """The calibrated constants as a JSON-serialisable dict (the predictor is not included)."""
        return {
            "format": FORMAT,
            "score": keras.saving.serialize_keras_object(self.score),
            "coverage": self.coverage,
            "quantiles": self.quantiles.tolist(),
            "groups": self.groups,
            "num_calibration": self.num_calibration,
            "num_samples": self.num_samples,
            "predict_kwargs": self.predict_kwargs,
        }

    def save(self, path):
        """Writes the calibrated constants as JSON (not the predictor: `tfp_uq.posterior.save` writes both)."""
        with open(os.fspath(path), "w") as handle:
            json.dump(self.get_config(), handle, indent=1)

    @classmethod
    def load(cls, path, predictor=None):
        """Reads constants written by `save`; `predictor` is the one it was calibrated on (or None to `apply`)."""
        with open(os.fspath(path)) as handle:
            config = json.load(handle)
        if config.get("format") != FORMAT:
            raise ValueError(f"path {os.fspath(path)!r} is not a tfp_uq conformal calibrator ({FORMAT})")
        return cls._from_config(predictor, config)

    @classmethod
    def _from_config(cls, predictor, config):
        config = dict(config)
        config.pop("format")
        return cls(predictor, _scores.get(config.pop("score")), **config)

    def save_state(self, folder):
        """The constants and the wrapped posterior's own state (`tfp_uq.posterior.save` writes the model)."""
        if self.posterior is None:
            raise ValueError("this calibrator was made from predictions and has no predictor: save(path) writes it")
        name = keras.saving.get_registered_name(type(self.posterior))
        if keras.saving.get_registered_object(name) is not type(self.posterior):
            raise TypeError(
                f"the calibrated {type(self.posterior).__name__} cannot be saved: register it with "
                "@keras.saving.register_keras_serializable() so load() can find it"
            )
        return {
            "posterior": {"class": name, "config": self.posterior.save_state(folder)},
            "calibration": self.get_config(),
        }

    @classmethod
    def from_state(cls, model, folder, config):
        saved = config["posterior"]
        posterior = keras.saving.get_registered_object(saved["class"]).from_state(model, folder, saved["config"])
        return cls._from_config(posterior, config["calibration"])


def calibrate(
    predictor, x_cal, y_cal, coverage=0.9, score="auto", groups=None, seed=0, num_samples=100, **predict_kwargs
):
    """Calibrates conformal intervals or prediction sets on held-out data.

    The predictor's predictive on `x_cal` (from `tfp_uq.predict`) scores each
    calibration target; the calibrator then gives every new input an
    interval (regression) or a set of classes (classification) that holds
    its target with probability at least `coverage`, on data exchangeable
    with the calibration data (see `ConformalCalibrator`). The calibration
    data must not have been used to train the predictor.

    Args:
        predictor: anything `tfp_uq.predict` takes: a Keras model (Bayesian
            or not), a `DeepEnsemble`, HMC's `PosteriorSamples`, ...
        x_cal: calibration inputs.
        y_cal: calibration targets: values shaped like the predictive mean
            (regression; for "cqr" without its last axis) or integer
            class labels, or one-hot (classification).
        coverage: the promised coverage 1 - alpha, in (0, 1). Needs at least
            coverage / (1 - coverage) calibration points (per group).
        score: a `tfp_uq.conformal.Score` or its name: "absolute",
            "normalized" (by the total predictive std; use
            `NormalizedResidual(std="epistemic")` for the epistemic part),
            "cqr" (regression); "lac", "aps", "raps" (classification, APS
            and RAPS randomized by default). "auto": "normalized" for a
            regression predictive with a positive std everywhere, else
            "absolute"; "lac" for classification.
        groups: Mondrian calibration: None (marginal), "class" (per class,
            classification) or one group label (integer or string) per
            calibration point; `predict` then takes the new inputs' groups.
        seed: integer seed of the Monte Carlo samples on `x_cal` and of a
            randomized score's noise.
        num_samples: Monte Carlo samples per input, here and in `predict`.
        **predict_kwargs: more arguments of `tfp_uq.predict` (`task`,
            `from_logits`, `batch_size`, ...), here and in `predict`.

    Returns:
        A `ConformalCalibrator`.

    Example:

    >>> calibrator = tfp_uq.conformal.calibrate(bnn, x_cal, y_cal, coverage=0.9, score="normalized")
    >>> result = calibrator.predict(x_test, seed=0)
    >>> result.lower, result.upper
    >>> calibrator.save("calibrator.json")
    """
    coverage = _validation.open_unit_interval("coverage", coverage)
    seed = _validation.optional_int("seed", seed)
    num_samples = _validation.positive_int("num_samples", num_samples)
    result = _predictive(_posterior(predictor), x_cal, num_samples, seed, predict_kwargs, "x_cal")
    score, quantiles, labels, sizes = _fit(result, y_cal, coverage, score, groups, seed, "predictor")
    return ConformalCalibrator(predictor, score, coverage, quantiles, labels, sizes, num_samples, predict_kwargs)
