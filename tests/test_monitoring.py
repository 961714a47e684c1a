import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq.monitoring import UncertaintyMonitor


@pytest.fixture(scope="module")
def digits_scores():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            tfp_uq.DenseFlipout(64, activation="relu", seed=1),
            tfp_uq.DenseFlipout(10, activation="softmax", seed=2),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=1000)
    # The monitor reads the scores, not how the step ran: no XLA compile (~3x the traced step's setup).
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x[:1000], y[:1000], epochs=15, batch_size=50, verbose=0)
    score = lambda data: tfp_uq.predict(model, data, num_samples=30, seed=0).total_entropy  # noqa: E731
    noise = np.random.default_rng(0).uniform(0, 1, size=(200, 64)).astype("float32")
    return score(x[1000:1400]), score(x[1400:1600]), score(noise)


def test_monitor_flags_noise_images_and_not_in_distribution(digits_scores):
    reference, in_distribution, noise = digits_scores
    monitor = UncertaintyMonitor().fit(reference)
    assert not monitor.score(in_distribution)["drift"]
    report = monitor.score(noise)
    assert report["drift"] and report["psi"] > 0.2 and report["ks_pvalue"] < 0.01


def test_monitor_state_round_trips_through_json(tmp_path, digits_scores):
    reference, in_distribution, _ = digits_scores
    monitor = UncertaintyMonitor(num_bins=8).fit(reference)
    monitor.save(tmp_path / "monitor.json")
    restored = UncertaintyMonitor.load(tmp_path / "monitor.json")
    assert restored.score(in_distribution) == monitor.score(in_distribution)


def test_psi_by_hand():
    monitor = UncertaintyMonitor(num_bins=2).fit([0.0, 1.0, 2.0, 3.0])  # median edge at 1.5
    report = monitor.score([0.0, 0.5, 1.0, 2.0])  # 3/4 below, 1/4 above
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert report["psi"] == pytest.approx(expected)


def test_bad_monitor_input_raises():
    with pytest.raises(ValueError, match="fit"):
        UncertaintyMonitor().score([0.1, 0.2])
    with pytest.raises(ValueError, match="reference_scores"):
        UncertaintyMonitor().fit([0.1])
    with pytest.raises(ValueError, match="ks_alpha"):
        UncertaintyMonitor(ks_alpha=2.0)


def test_monitor_counts_and_flags_nonfinite_scores_and_reads_prediction_results():
    monitor = UncertaintyMonitor().fit(np.linspace(0.0, 1.0, 200))
    report = monitor.score(np.concatenate([np.linspace(0.0, 1.0, 50), [np.nan, np.inf]]))
    assert report["num_nonfinite"] == 2 and report["drift"]
    clean = monitor.score(np.linspace(0.0, 1.0, 50))
    assert clean["num_nonfinite"] == 0 and not clean["drift"]
    assert monitor.score([np.nan, np.nan, 0.5])["drift"]
    result = tfp_uq.PredictionResult(
        task="regression", mean=np.zeros((3, 2)), num_samples=1, variance=np.array([[1.0, 4.0], [0.25, 0.0], [0, 0]])
    )
    by_std = UncertaintyMonitor(score="std").fit(result)
    np.testing.assert_allclose(by_std.reference, [0.0, 0.5, 2.0])
    with pytest.raises(ValueError, match="score"):
        UncertaintyMonitor(score="mutual_information").fit(result)


def test_coverage_check_flags_a_broken_conformal_promise():
    rng = np.random.default_rng(0)
    calibrator = tfp_uq.conformal.ConformalCalibrator(None, "absolute", 0.9, [[1.645]], num_calibration=[999])
    mean = np.zeros((400, 1))
    result = calibrator.apply(
        tfp_uq.PredictionResult(task="regression", mean=mean, num_samples=1, variance=np.ones((400, 1)))
    )
    monitor = UncertaintyMonitor()
    kept = monitor.check_coverage(result, rng.normal(size=(400, 1)), calibrator=calibrator, window=200)
    assert abs(kept["coverage"] - 0.9) < 0.05 and not kept["broken"]
    drifted = monitor.check_coverage(result, 2.0 * rng.normal(size=(400, 1)), calibrator=calibrator, window=200)
    assert drifted["coverage"] < 0.7 and drifted["broken"]
    with pytest.raises(ValueError, match="intervals or sets"):
        monitor.check_coverage(tfp_uq.PredictionResult(task="regression", mean=mean, num_samples=1), mean, coverage=0.9)
