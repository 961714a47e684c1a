"""Recalibration, selective prediction and active learning."""

import numpy as np
import pytest

import tfp_uq
from tfp_uq import active_learning, metrics, recalibration, selective


def _overconfident_logits(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    true_logits = rng.normal(size=(n, 4))
    true_logits[np.arange(n), labels] += 1.0
    return true_logits * 4.0, labels  # sharpened: overconfident


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    logits, labels = _overconfident_logits()
    scaler = recalibration.TemperatureScaling().fit(logits[:1500], labels[:1500])
    assert scaler.temperature > 1.5
    before = metrics.negative_log_likelihood(_softmax(logits[1500:]), labels[1500:])
    after = metrics.negative_log_likelihood(scaler.transform(logits[1500:]), labels[1500:])
    assert after < before - 0.1
    np.testing.assert_array_equal(scaler.transform(logits).argmax(-1), logits.argmax(-1))


def test_temperature_scaling_reads_a_binary_logit_as_two_classes():
    logits, labels = _overconfident_logits()
    binary = (logits[:, 1] - logits[:, 0])[:, None]  # the two-class problem of classes 0 and 1
    labels = (labels == 1).astype(int)
    scaler = recalibration.TemperatureScaling().fit(binary, labels)
    two_classes = recalibration.TemperatureScaling().fit(np.concatenate([np.zeros_like(binary), binary], 1), labels)
    assert scaler.temperature == pytest.approx(two_classes.temperature)
    probs = scaler.transform(binary[:, 0])
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-binary[:, 0] / scaler.temperature)))
    np.testing.assert_allclose(scaler.transform(probs=1 / (1 + np.exp(-binary))), probs, rtol=1e-6)


def test_variance_recalibration_has_closed_form_factor():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 2.0, 5000)
    recal = recalibration.VarianceRecalibration().fit(y, np.zeros_like(y), np.ones_like(y))
    assert recal.factor == pytest.approx(np.sqrt(np.mean(y**2)))
    assert recal.factor == pytest.approx(2.0, rel=0.05)


def test_risk_coverage_by_hand():
    uncertainty = np.array([0.1, 0.4, 0.2, 0.9])
    errors = np.array([0, 1, 0, 1])
    coverage, risk, thresholds = selective.risk_coverage_curve(uncertainty, errors)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.0, 1 / 3, 0.5])
    assert selective.area_under_risk_coverage(uncertainty, errors) == pytest.approx((1 / 3 + 0.5) / 4)
    assert selective.selection_threshold(uncertainty, errors, target_risk=0.0) == 0.2
    assert selective.selection_threshold(uncertainty, errors, target_coverage=0.7) == 0.4
    np.testing.assert_array_equal(selective.should_refer(uncertainty, 0.2), [False, True, False, True])
    with pytest.raises(TypeError, match="threshold"):
        selective.should_refer(uncertainty, "0.2")


def test_selection_threshold_needs_one_target():
    with pytest.raises(ValueError, match="exactly one"):
        selective.selection_threshold([0.1], [0])
    with pytest.raises(ValueError, match="target_coverage"):
        selective.selection_threshold([0.1], [0], target_coverage=1.5)


def test_active_learning_selects_highest_scores():
    result = tfp_uq.PredictionResult(
        task="classification",
        mean=None,
        num_samples=2,
        mutual_information=np.array([0.1, 0.5, 0.3]),
        total_entropy=np.array([0.9, 0.2, 0.3]),
        variation_ratio=np.array([0.0, 0.5, 0.5]),
    )
    np.testing.assert_array_equal(active_learning.select(result, 2, "bald"), [1, 2])
    np.testing.assert_array_equal(active_learning.select(result, 1, "max_entropy"), [0])
    with pytest.raises(ValueError, match="method"):
        active_learning.select(result, 1, "random")
    with pytest.raises(ValueError, match="num_queries"):
        active_learning.select(result, 4)


def test_a_nan_uncertainty_refers_and_is_answered_last():
    uncertainty = np.array([0.1, np.nan, 0.2])
    np.testing.assert_array_equal(selective.should_refer(uncertainty, 0.5), [False, True, False])
    coverage, risk, thresholds = selective.risk_coverage_curve(uncertainty, np.array([0, 1, 0]))
    np.testing.assert_allclose(risk, [0.0, 0.0, 1 / 3])
    assert thresholds[-1] == np.inf
    assert selective.selection_threshold(uncertainty, np.array([0, 1, 0]), target_risk=0.0) == 0.2
