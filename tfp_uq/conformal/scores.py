"""Nonconformity scores: how badly a target fits a prediction.

A score s(x, y) is computed from the predictive summaries that
`tfp_uq.predict` returns (mean, variance, probs); larger means y conforms
less. Split conformal prediction keeps the targets whose score is at most the
conformal quantile q of the calibration scores,

    C(x) = {y : s(x, y) <= q},

which a regression score turns into an interval [lower, upper] and a
classification score into a boolean mask over the classes. Every formula is
written once, in `keras.ops`: calibration runs it on NumPy arrays, a serving
graph on tensors.
"""

import abc
import numbers

import keras
import numpy as np
from keras import ops

from tfp_uq import _validation

__all__ = [
    "APS",
    "CQR",
    "LAC",
    "RAPS",
    "AbsoluteResidual",
    "ClassificationScore",
    "NormalizedResidual",
    "RegressionScore",
    "Score",
    "get",
]

STD_KINDS = ("total", "epistemic")
_VARIANCE_FIELDS = {"total": "variance", "epistemic": "epistemic_variance"}


class Score:
    """A nonconformity score; subclasses say which task it serves.

    Attributes:
        task: "regression" or "classification".
        randomized: whether the score takes uniform noise, one draw per input.
    """

    task = None
    randomized = False

    def check(self, fields):
        """Raises a ValueError naming `score` if `fields` (the predictive summaries) cannot give this score."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class RegressionScore(Score, abc.ABC):
    """A regression score s(x, y) and the interval {y : s(x, y) <= q} it gives."""

    task = "regression"

    def target_shape(self, mean_shape):
        """The shape of the targets y for predictive means of `mean_shape`."""
        return tuple(mean_shape)

    @abc.abstractmethod
    def scores(self, fields, y):
        """The score of each target, shaped like y."""

    @abc.abstractmethod
    def bounds(self, fields, quantile):
        """`(lower, upper)`: the interval {y : s(x, y) <= quantile}, shaped like y."""


@keras.saving.register_keras_serializable(package="tfp_uq")
class AbsoluteResidual(RegressionScore):
    """The absolute residual s = |y - mean|: intervals mean +- q of one width everywhere.

    Example:

    >>> calibrator = tfp_uq.conformal.calibrate(model, x_cal, y_cal, score="absolute")
    """

    def scores(self, fields, y):
        return ops.abs(y - fields["mean"])

    def bounds(self, fields, quantile):
        return fields["mean"] - quantile, fields["mean"] + quantile


@keras.saving.register_keras_serializable(package="tfp_uq")
class NormalizedResidual(RegressionScore):
    """The residual in units of the predictive std, s = |y - mean| / max(std, std_floor).

    The interval mean +- q std is wide where the model is unsure and narrow
    where it is sure (Papadopoulos et al. 2002; Lei et al. 2018). The std is
    the total predictive std (epistemic and aleatoric) or its epistemic part
    alone, as `tfp_uq.predict` splits it.

    Args:
        std: "total" (sqrt of `variance`) or "epistemic" (sqrt of
            `epistemic_variance`).
        std_floor: the std is floored at this (> 0, in the target's units),
            so an input the model is certain about cannot divide by zero.

    Example:

    >>> score = tfp_uq.conformal.NormalizedResidual(std="epistemic")
    >>> calibrator = tfp_uq.conformal.calibrate(bnn, x_cal, y_cal, score=score)
    """

    def __init__(self, std="total", std_floor=1e-6):
        self.std = _validation.one_of("std", std, STD_KINDS)
        self.std_floor = _validation.positive("std_floor", std_floor)

    def _std(self, fields):
        return ops.maximum(ops.sqrt(fields[_VARIANCE_FIELDS[self.std]]), self.std_floor)

    def check(self, fields):
        variance = fields.get(_VARIANCE_FIELDS[self.std])
        if variance is None or not np.any(np.sqrt(variance) > self.std_floor):
            raise ValueError(
                f"score: NormalizedResidual(std={self.std!r}) divides by the predictive std, but the "
                f"predictor's {self.std} std is at most std_floor={self.std_floor} on every calibration input "
                "(a deterministic model has no epistemic std, and a point-output one no aleatoric std); "
                "use score='absolute'" + (" or std='total'" if self.std == "epistemic" else "")
            )

    def scores(self, fields, y):
        return ops.abs(y - fields["mean"]) / self._std(fields)

    def bounds(self, fields, quantile):
        half_width = quantile * self._std(fields)
        return fields["mean"] - half_width, fields["mean"] + half_width

    def get_config(self):
        return {"std": self.std, "std_floor": self.std_floor}


@keras.saving.register_keras_serializable(package="tfp_uq")
class CQR(RegressionScore):
    """Conformalized quantile regression (Romano, Patterson & Candes 2019).

    For a predictor whose regression output holds, on its last axis, a lower
    and an upper quantile of y, `[q_lo(x), q_hi(x)]` (two units, e.g. trained
    with the pinball loss at levels alpha / 2 and 1 - alpha / 2; a Bayesian
    one gives their Monte Carlo mean), the score is

        s = max(q_lo(x) - y, y - q_hi(x)),

    and the interval [q_lo - q, q_hi + q] widens (q > 0) or narrows (q < 0)
    the model's own band until it covers. The targets y have the output's
    shape without that last axis.

    Example:

    >>> quantile_model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])  # [q_lo, q_hi]
    >>> calibrator = tfp_uq.conformal.calibrate(quantile_model, x_cal, y_cal, score="cqr")
    """

    def target_shape(self, mean_shape):
        return tuple(mean_shape)[:-1]

    def check(self, fields):
        shape = np.shape(fields["mean"])
        if len(shape) < 2 or shape[-1] != 2:
            raise ValueError(
                "score: CQR needs a predictor whose output has 2 units on its last axis, [lower quantile, "
                f"upper quantile]; its predictive mean has shape {shape}"
            )

    def scores(self, fields, y):
        return ops.maximum(fields["mean"][..., 0] - y, y - fields["mean"][..., 1])

    def bounds(self, fields, quantile):
        return fields["mean"][..., 0] - quantile, fields["mean"][..., 1] + quantile


class ClassificationScore(Score, abc.ABC):
    """A classification score for every class, s(x, k), from the predictive probabilities."""

    task = "classification"

    @abc.abstractmethod
    def class_scores(self, probs, noise=None):
        """`(n, num_classes)` scores of every class.

        Args:
            probs: `(n, num_classes)` predictive probabilities.
            noise: `(n,)` uniform draws on [0, 1), one per input, for a
                randomized score (ignored otherwise).
        """


@keras.saving.register_keras_serializable(package="tfp_uq")
class LAC(ClassificationScore):
    """Least ambiguous set-valued classifier (Sadinle, Lei & Wasserman 2019): s = 1 - p_y.

    The set {k : p_k >= 1 - q} has the smallest expected size of all sets
    with the coverage, when the probabilities are right; it can be empty
    for an input whose top probability is below 1 - q.
    """

    def class_scores(self, probs, noise=None):
        return 1.0 - probs


@keras.saving.register_keras_serializable(package="tfp_uq")
class APS(ClassificationScore):
    """Adaptive prediction sets (Romano, Sesia & Candes 2020).

    With the classes ordered by decreasing probability (ties: lower index
    first), the score of class y is the probability mass ranked above it
    plus u times its own,

        s(x, y, u) = sum_{j ranked before y} p_j + u p_y,

    with u ~ U(0, 1), one draw per input, when `randomized`, and u = 1 (the
    cumulative mass up to and including y) when not. The set
    {y : s(x, y, u) <= q} is the top classes of the ranking; it grows with
    the model's doubt. Randomized sets cover with probability in
    [1 - alpha, 1 - alpha + 1 / (n + 1)]; deterministic ones are the same
    rule with u = 1, which can leave an input whose top probability alone
    exceeds q with an empty set (and such inputs count as misses in the
    guarantee).

    Args:
        randomized: draw u per input (True) or use u = 1 (False).
    """

    def __init__(self, randomized=True):
        self.randomized = _validation.boolean("randomized", randomized)

    def _penalty(self, ranks, dtype):
        """The penalty of the classes at 0-based `ranks` (none for APS)."""
        return 0.0

    def class_scores(self, probs, noise=None):
        if self.randomized and noise is None:
            raise ValueError(f"{type(self).__name__}(randomized=True) needs one uniform draw per input: noise")
        num_classes = probs.shape[-1]
        # Sorting, not comparing every pair of classes, keeps memory at O(num_classes) per input;
        # top_k puts the lower class index first among equal probabilities.
        ordered, order = ops.top_k(probs, num_classes)
        cumulative = ops.cumsum(ordered, axis=-1)
        above = ops.concatenate([ops.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], axis=-1)
        weight = ops.expand_dims(ops.cast(noise, probs.dtype), -1) if self.randomized else 1.0
        ranks = ops.arange(num_classes)
        ordered_scores = above + weight * ordered + self._penalty(ranks, probs.dtype)
        # Back from rank order to class order: class k's score sits at its rank.
        return ops.take_along_axis(ordered_scores, ops.argsort(order, axis=-1), axis=-1)

    def get_config(self):
        return {"randomized": self.randomized}


@keras.saving.register_keras_serializable(package="tfp_uq")
class RAPS(APS):
    """Regularized adaptive prediction sets (Angelopoulos, Bates, Malik & Jordan 2021).

    The APS score plus a penalty on classes ranked below the first `k_reg`,

        s(x, y, u) = sum_{j ranked before y} p_j + u p_y + lambda_ (o(y) - k_reg)^+,

    with o(y) the 1-based rank of y. A large `lambda_` keeps sets small when
    the tail of the probabilities is noise; `lambda_ = 0` is APS.

    Args:
        k_reg: classes ranked 1..k_reg go unpenalised (integer >= 0).
        lambda_: penalty per rank beyond `k_reg` (>= 0).
        randomized: as for `APS`.

    Example:

    >>> score = tfp_uq.conformal.RAPS(k_reg=2, lambda_=0.05, randomized=False)
    >>> calibrator = tfp_uq.conformal.calibrate(classifier, x_cal, y_cal, score=score)
    """

    def __init__(self, k_reg=1, lambda_=0.01, randomized=True):
        super().__init__(randomized)
        if isinstance(k_reg, bool) or not isinstance(k_reg, numbers.Integral):
            raise TypeError(f"k_reg must be an integer >= 0, got {k_reg!r}")
        if k_reg < 0:
            raise ValueError(f"k_reg must be an integer >= 0, got {k_reg!r}")
        self.k_reg = int(k_reg)
        self.lambda_ = _validation.non_negative("lambda_", lambda_)

    def _penalty(self, ranks, dtype):
        return self.lambda_ * ops.maximum(ops.cast(ranks + 1 - self.k_reg, dtype), 0.0)

    def get_config(self):
        return {"k_reg": self.k_reg, "lambda_": self.lambda_, "randomized": self.randomized}


SCORES = {
    "absolute": AbsoluteResidual,
    "normalized": NormalizedResidual,
    "cqr": CQR,
    "lac": LAC,
    "aps": APS,
    "raps": RAPS,
}


def get(identifier):
    """A score from a `Score`, its name (with default arguments) or its Keras config dict.

    Names: "absolute", "normalized", "cqr" (regression); "lac", "aps",
    "raps" (classification).
    """
    if isinstance(identifier, Score):
        return identifier
    if isinstance(identifier, str) and identifier in SCORES:
        return SCORES[identifier]()
    if isinstance(identifier, dict):
        score = keras.saving.deserialize_keras_object(identifier)
        if isinstance(score, Score):
            return score
    raise ValueError(
        f"score must be a tfp_uq.conformal.Score or one of {', '.join(map(repr, SCORES))}, got {identifier!r}"
    )
