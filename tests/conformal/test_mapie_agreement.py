"""Agreement with MAPIE's split conformal regressor and LAC classifier on the same fixed predictions.

MAPIE is not a dependency. The expected numbers were computed once with
MAPIE 1.6.0 (numpy 2.4.6, scikit-learn 1.9.1, in a scratch venv) by wrapping
the arrays below in scikit-learn estimators that return them by row index
(`predict(X) = REG_MEAN[X[:, 0]]`, `predict_proba(X) = CLS_PROBS[X[:, 0]]`,
`classes_ = [0, 1, 2]`), then, for confidence_level in (0.8, 0.9):

    SplitConformalRegressor(estimator, confidence_level=level, conformity_score="absolute", prefit=True)
        .conformalize(rows[:20], REG_Y_CAL).predict_interval(rows[20:])
    SplitConformalClassifier(estimator, confidence_level=level, conformity_score="lac", prefit=True)
        .conformalize(rows[:20], CLS_Y_CAL).predict_set(rows[20:])

MAPIE takes the quantile as np.quantile(scores, ceil((n + 1) * level) / n,
method="lower"), the ceil((n + 1) * level)-th smallest score (mapie/utils.py,
_compute_regression_quantile and _compute_classification_quantile), and keeps
class k when (1 - p_k) - q <= 1e-8 (mapie/conformity_scores/sets/lac.py): the
rule of tfp_uq.conformal.
"""

import numpy as np
import pytest

from tfp_uq import conformal
from tfp_uq.prediction import PredictionResult

# Fixed predictions: rows 0-19 calibrate, the rest are test inputs.
REG_MEAN = [
    -1.398,
    -1.204,
    -1.302,
    -0.623,
    1.447,
    -1.601,
    0.944,
    1.262,
    -0.355,
    -0.701,
    0.472,
    1.215,
    2.156,
    0.892,
    1.594,
    -0.45,
    -0.874,
    -1.72,
    -1.154,
    -0.363,
    0.193,
    -1.313,
    0.816,
    -0.103,
    -0.642,
]
REG_Y_CAL = [
    -1.551,
    -0.648,
    -1.243,
    -1.005,
    0.97,
    -0.544,
    0.568,
    2.124,
    0.784,
    -2.735,
    1.755,
    1.001,
    0.963,
    0.253,
    2.295,
    0.046,
    -0.278,
    -2.789,
    0.829,
    2.078,
]
CLS_PROBS = [
    [0.445, 0.284, 0.271],
    [0.841, 0.018, 0.141],
    [0.93, 0.019, 0.051],
    [0.939, 0.018, 0.043],
    [0.697, 0.194, 0.109],
    [0.328, 0.374, 0.298],
    [0.093, 0.787, 0.12],
    [0.636, 0.169, 0.195],
    [0.489, 0.13, 0.381],
    [0.326, 0.039, 0.635],
    [0.523, 0.382, 0.095],
    [0.002, 0.908, 0.09],
    [0.013, 0.872, 0.115],
    [0.307, 0.094, 0.599],
    [0.339, 0.363, 0.298],
    [0.514, 0.012, 0.474],
    [0.662, 0.103, 0.235],
    [0.09, 0.192, 0.718],
    [0.048, 0.406, 0.546],
    [0.187, 0.749, 0.064],
    [0.063, 0.914, 0.023],
    [0.192, 0.238, 0.57],
    [0.341, 0.597, 0.062],
    [0.346, 0.361, 0.293],
    [0.131, 0.724, 0.145],
    [0.048, 0.502, 0.45],
]
CLS_Y_CAL = [2, 0, 0, 0, 0, 1, 1, 0, 2, 0, 1, 1, 1, 0, 2, 2, 0, 2, 0, 1]

MAPIE_INTERVALS = {  # confidence_level: (lower, upper) of the 5 test rows
    0.8: ([-1.09, -2.596, -0.467, -1.386, -1.925], [1.476, -0.03, 2.099, 1.18, 0.641]),
    0.9: ([-1.841, -3.347, -1.218, -2.137, -2.676], [2.227, 0.721, 2.85, 1.931, 1.392]),
}
MAPIE_LAC = {  # confidence_level: (quantile, sets of the 6 test rows)
    0.8: (0.693, [[0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1]]),
    0.9: (0.729, [[0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1], [0, 1, 0], [0, 1, 1]]),
}


def _regression(rows):
    return PredictionResult(task="regression", mean=np.asarray(REG_MEAN)[rows, None], num_samples=1)


def _classification(rows):
    probs = np.asarray(CLS_PROBS)[rows]
    return PredictionResult(task="classification", mean=probs, probs=probs, num_samples=1)


@pytest.mark.parametrize("coverage", sorted(MAPIE_INTERVALS))
def test_split_regression_intervals_equal_mapie(coverage):
    calibrator = conformal.ConformalCalibrator.from_predictions(
        _regression(slice(0, 20)), np.asarray(REG_Y_CAL)[:, None], coverage, score="absolute"
    )
    result = calibrator.apply(_regression(slice(20, None)))
    lower, upper = MAPIE_INTERVALS[coverage]
    np.testing.assert_allclose(result.lower[:, 0], lower, atol=1e-9)
    np.testing.assert_allclose(result.upper[:, 0], upper, atol=1e-9)


@pytest.mark.parametrize("coverage", sorted(MAPIE_LAC))
def test_lac_sets_equal_mapie(coverage):
    calibrator = conformal.ConformalCalibrator.from_predictions(
        _classification(slice(0, 20)), CLS_Y_CAL, coverage, score="lac"
    )
    quantile, sets = MAPIE_LAC[coverage]
    assert calibrator.quantiles[0] == pytest.approx(quantile, abs=1e-9)
    result = calibrator.apply(_classification(slice(20, None)))
    np.testing.assert_array_equal(result.prediction_set, np.asarray(sets, dtype=bool))
