import keras
import numpy as np
import pytest

from tfp_uq import metrics

RNG = np.random.default_rng(0)
PROBS = RNG.dirichlet(np.ones(4), 300).astype("float32")
LABELS = RNG.integers(0, 4, 300)


def test_streamed_ece_equals_numpy_ece():
    metric = metrics.ExpectedCalibrationError(num_bins=15)
    for start in range(0, 300, 64):
        metric.update_state(LABELS[start : start + 64], PROBS[start : start + 64])
    assert float(metric.result()) == pytest.approx(metrics.expected_calibration_error(PROBS, LABELS), abs=1e-6)
    metric.reset_state()
    metric.update_state(np.eye(4)[LABELS], PROBS)  # one-hot labels
    assert float(metric.result()) == pytest.approx(metrics.expected_calibration_error(PROBS, LABELS), abs=1e-6)


def test_brier_metric_equals_numpy_brier():
    metric = metrics.BrierScore()
    metric.update_state(LABELS[:, None], PROBS)
    assert float(metric.result()) == pytest.approx(metrics.brier_score(PROBS, LABELS), rel=1e-5)


def test_metrics_work_in_compile():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=[metrics.ExpectedCalibrationError(), metrics.BrierScore()]
    )
    logs = model.evaluate(PROBS, LABELS, return_dict=True, verbose=0)
    assert 0 <= logs["ece"] <= 1 and 0 <= logs["brier"] <= 2


def test_a_single_sigmoid_unit_is_read_as_a_binary_classifier():
    positive = RNG.uniform(size=(200, 1)).astype("float32")
    labels = RNG.integers(0, 2, (200, 1))
    ece, brier = metrics.ExpectedCalibrationError(num_bins=10), metrics.BrierScore()
    for metric in (ece, brier):
        metric.update_state(labels, positive)
    assert float(ece.result()) == pytest.approx(metrics.expected_calibration_error(positive, labels, 10), abs=1e-6)
    assert float(brier.result()) == pytest.approx(metrics.brier_score(positive, labels), rel=1e-5)
    # Brier of [1 - p, p] against one-hot labels: 2 (p - y)^2.
    assert float(brier.result()) == pytest.approx(2 * np.mean((positive - labels) ** 2), rel=1e-5)


def test_from_logits_metrics_equal_the_metrics_of_softmax_and_sigmoid_probabilities():
    logits = RNG.normal(0, 2, (300, 4)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ece, brier = metrics.ExpectedCalibrationError(from_logits=True), metrics.BrierScore(from_logits=True)
    for metric in (ece, brier):
        metric.update_state(LABELS, logits)
    assert float(ece.result()) == pytest.approx(metrics.expected_calibration_error(probs, LABELS), abs=1e-5)
    assert float(brier.result()) == pytest.approx(metrics.brier_score(probs, LABELS), rel=1e-5)
    binary = metrics.ExpectedCalibrationError(num_bins=10, from_logits=True)
    binary.update_state(LABELS % 2, logits[:, :1])
    positive = 1 / (1 + np.exp(-logits[:, 0]))
    assert float(binary.result()) == pytest.approx(
        metrics.expected_calibration_error(positive, LABELS % 2, 10), abs=1e-5
    )
    restored = metrics.ExpectedCalibrationError.from_config(ece.get_config())
    assert restored.from_logits and metrics.BrierScore.from_config(brier.get_config()).from_logits
    with pytest.raises(TypeError, match="from_logits"):
        metrics.BrierScore(from_logits="yes")
