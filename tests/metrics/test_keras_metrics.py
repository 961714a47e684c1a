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
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[metrics.ExpectedCalibrationError(), metrics.BrierScore()])
    logs = model.evaluate(PROBS, LABELS, return_dict=True, verbose=0)
    assert 0 <= logs["ece"] <= 1 and 0 <= logs["brier"] <= 2
