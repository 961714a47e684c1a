"""The split conformal guarantee, checked over 200 random calibration/test splits of fixed predictions.

For exchangeable scores without ties, the coverage of one split has mean
exactly k / (n + 1), k = ceil((n + 1)(1 - alpha)), which lies in
[1 - alpha, 1 - alpha + 1 / (n + 1)]. Given the pool, the 200 splits are
independent draws, so their mean coverage is within TOLERANCE_Z standard
errors of k / (n + 1); the standard error comes from the law of one split's
coverage, BetaBinomial(m, k, n + 1 - k) / m for m test points (the test
points here are the rest of a finite pool, which only narrows it).
"""

import math

import numpy as np
import pytest
from scipy import special, stats

from tfp_uq import conformal, metrics
from tfp_uq.prediction import PredictionResult

NUM_SPLITS = 200
POOL = 1000
NUM_CALIBRATION = 50
COVERAGE = 0.9
# Two-sided, about 5e-4 per check: a dozen checks stay below a 1% false alarm in all.
TOLERANCE_Z = 3.5


def _expected_mean_and_tolerance(n, m, coverage):
    k = conformal.conformal_rank(n, coverage)
    a, b = k, n + 1 - k
    variance = stats.betabinom(m, a, b).var() / m**2
    return k / (n + 1), TOLERANCE_Z * math.sqrt(variance / NUM_SPLITS)


def _regression_pool():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, POOL)
    noise_std = 0.1 + np.abs(x) / 2  # heteroscedastic
    y = np.sin(2 * x) + noise_std * rng.normal(size=POOL)
    mean = np.sin(2 * x) + 0.1  # biased
    epistemic = 0.02 + 0.05 * x**2
    aleatoric = (0.8 * noise_std) ** 2  # too narrow
    quantiles = np.stack([mean - 1.2 * noise_std, mean + 0.9 * noise_std], axis=-1)
    result = PredictionResult(
        task="regression",
        mean=mean[:, None],
        num_samples=100,
        variance=(epistemic + aleatoric)[:, None],
        aleatoric_variance=aleatoric[:, None],
        epistemic_variance=epistemic[:, None],
    )
    quantile_result = PredictionResult(task="regression", mean=quantiles, num_samples=1)
    return result, quantile_result, y[:, None], (x > 0).astype(int)


def _classification_pool(num_classes=4):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=1.5, size=(POOL, num_classes))
    true_probs = special.softmax(logits, axis=1)
    labels = np.array([rng.choice(num_classes, p=p) for p in true_probs])
    # Overconfident, and blind to class 0 (its logit 1.5 too low): marginal sets under-cover it.
    probs = special.softmax(1.8 * logits - 1.5 * (np.arange(num_classes) == 0), axis=1)
    return PredictionResult(task="classification", mean=probs, probs=probs, num_samples=1), labels


def _take(result, index):
    fields = {name: value for name, value in vars(result).items() if isinstance(value, np.ndarray)}
    return PredictionResult(
        task=result.task, num_samples=result.num_samples, **{name: value[index] for name, value in fields.items()}
    )


def _split_coverages(result, y, score, covered, strata=None, groups=None):
    """Coverage per split (and per stratum); calibration points drawn within each stratum when given."""
    rng = np.random.default_rng(2)
    strata = np.zeros(len(y), dtype=int) if strata is None else strata
    values = np.unique(strata)
    coverages = []
    for split in range(NUM_SPLITS):
        calibration = np.concatenate(
            [rng.choice(np.flatnonzero(strata == s), NUM_CALIBRATION, replace=False) for s in values]
        )
        test = np.setdiff1d(np.arange(len(y)), calibration)
        calibrator = conformal.ConformalCalibrator.from_predictions(
            _take(result, calibration),
            y[calibration],
            COVERAGE,
            score=score,
            seed=split,
            groups=None if groups is None else (groups if isinstance(groups, str) else groups[calibration]),
        )
        test_groups = None if groups is None or isinstance(groups, str) else groups[test]
        hits = covered(calibrator.apply(_take(result, test), groups=test_groups, seed=10_000 + split), y[test])
        coverages.append([hits[strata[test] == s].mean() for s in values])
    return np.array(coverages), [np.sum(strata == s) - NUM_CALIBRATION for s in values]


def _interval_hits(result, y):
    return metrics.in_interval(y, result.lower, result.upper).reshape(-1)


def _set_hits(result, y):
    return metrics.in_set(result.prediction_set, y)


def _assert_guarantee(coverages, test_sizes):
    for mean, m in zip(coverages.mean(axis=0), test_sizes):
        expected, tolerance = _expected_mean_and_tolerance(NUM_CALIBRATION, m, COVERAGE)
        assert COVERAGE - tolerance <= mean <= COVERAGE + 1 / (NUM_CALIBRATION + 1) + tolerance
        assert mean == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize(
    "score",
    [conformal.AbsoluteResidual(), conformal.NormalizedResidual("total"), conformal.NormalizedResidual("epistemic")],
    ids=repr,
)
def test_regression_scores_cover_within_the_guarantee(score):
    result, _, y, _ = _regression_pool()
    _assert_guarantee(*_split_coverages(result, y, score, _interval_hits))


def test_cqr_covers_within_the_guarantee():
    _, quantile_result, y, _ = _regression_pool()
    _assert_guarantee(*_split_coverages(quantile_result, y[:, 0], "cqr", _interval_hits))


@pytest.mark.parametrize(
    "score",
    [
        conformal.LAC(),
        conformal.APS(randomized=True),
        conformal.APS(randomized=False),
        conformal.RAPS(k_reg=1, lambda_=0.05, randomized=True),
        conformal.RAPS(k_reg=2, lambda_=0.05, randomized=False),
    ],
    ids=repr,
)
def test_classification_scores_cover_within_the_guarantee(score):
    result, labels = _classification_pool()
    _assert_guarantee(*_split_coverages(result, labels, score, _set_hits))


def test_mondrian_groups_cover_within_each_group():
    result, _, y, groups = _regression_pool()
    coverages, sizes = _split_coverages(result, y, "normalized", _interval_hits, strata=groups, groups=groups)
    _assert_guarantee(coverages, sizes)


def test_class_conditional_sets_cover_within_each_class():
    result, labels = _classification_pool()
    coverages, sizes = _split_coverages(result, labels, "lac", _set_hits, strata=labels, groups="class")
    _assert_guarantee(coverages, sizes)


def test_marginal_lac_under_covers_a_hard_class_that_class_conditional_covers():
    # The reason for Mondrian calibration: marginal coverage can hide a class left out.
    result, labels = _classification_pool()
    marginal, _ = _split_coverages(result, labels, "lac", _set_hits, strata=labels)
    conditional, _ = _split_coverages(result, labels, "lac", _set_hits, strata=labels, groups="class")
    worst = np.argmin(marginal.mean(axis=0))
    assert worst == 0
    # About 0.79 against the 0.90 promised, and back to 0.90 per class.
    assert marginal.mean(axis=0)[0] < COVERAGE - 0.05
    assert conditional.mean(axis=0)[0] > COVERAGE - 0.01
