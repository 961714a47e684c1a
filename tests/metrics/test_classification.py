import math

import numpy as np
import pytest

from tfp_uq import metrics

# Four examples, three classes; top-label confidences 0.9, 0.6, 0.55, 0.3
# (ties never matter here) and correct, wrong, correct, wrong.
PROBS = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.6, 0.3, 0.1],
        [0.2, 0.55, 0.25],
        [0.3, 0.3, 0.4],
    ]
)
LABELS = np.array([0, 1, 1, 0])


def test_accuracy_nll_and_brier_by_hand():
    assert metrics.accuracy(PROBS, LABELS) == 0.5
    expected_nll = -(math.log(0.9) + math.log(0.3) + math.log(0.55) + math.log(0.3)) / 4
    assert metrics.negative_log_likelihood(PROBS, LABELS) == pytest.approx(expected_nll)
    brier = (
        (0.1**2 + 0.05**2 + 0.05**2)
        + (0.6**2 + 0.7**2 + 0.1**2)
        + (0.2**2 + 0.45**2 + 0.25**2)
        + (0.7**2 + 0.3**2 + 0.4**2)
    ) / 4
    assert metrics.brier_score(PROBS, LABELS) == pytest.approx(brier)


def test_ece_by_hand_with_ten_bins():
    # Bins: 0.9 -> (0.8, 0.9], 0.6 -> (0.5, 0.6], 0.55 -> (0.5, 0.6], 0.4 -> (0.3, 0.4].
    # |1 - 0.9| + |(0 + 1) - (0.6 + 0.55)| + |0 - 0.4|, over 4 examples.
    expected = (0.1 + 0.15 + 0.4) / 4
    assert metrics.expected_calibration_error(PROBS, LABELS, num_bins=10) == pytest.approx(expected)


def test_mce_is_the_worst_bin():
    # Per-bin gaps: 0.1, |0.5 - 0.575| = 0.075, 0.4.
    assert metrics.maximum_calibration_error(PROBS, LABELS, num_bins=10) == pytest.approx(0.4)


def test_equal_mass_ece_with_two_bins_by_hand():
    # Sorted confidences 0.4, 0.55 | 0.6, 0.9 with correctness 0, 1 | 0, 1.
    expected = (abs(1 - 0.95) + abs(1 - 1.5)) / 4
    assert metrics.equal_mass_calibration_error(PROBS, LABELS, num_bins=2) == pytest.approx(expected)


def test_classwise_ece_by_hand_with_two_bins():
    # Class k: bins (0, .5] and (.5, 1] of p_k against 1[y = k].
    # k=0: p=[.9,.6,.2,.3], hit=[1,0,0,1]: high bin |1-1.5|, low bin |1-0.5| -> 1.0/4
    # k=1: p=[.05,.3,.55,.3], hit=[0,1,1,0]: high |1-.55|, low |1-.65| -> .8/4
    # k=2: p=[.05,.1,.25,.4], hit=0: low |0-.8| -> .8/4
    expected = np.mean([1.0 / 4, 0.8 / 4, 0.8 / 4])
    assert metrics.classwise_calibration_error(PROBS, LABELS, num_bins=2) == pytest.approx(expected)


def test_reliability_table_counts_and_accuracy():
    table = metrics.reliability_table(PROBS, LABELS, num_bins=10)
    assert table["count"].tolist() == [0, 0, 0, 1, 0, 2, 0, 0, 1, 0]
    assert table["accuracy"][5] == pytest.approx(0.5)
    assert np.isnan(table["accuracy"][0])


def test_perfectly_calibrated_sample_has_small_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200000)
    correct = rng.uniform(size=confidence.size) < confidence
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(correct, 0, 1)
    assert metrics.expected_calibration_error(probs, labels) < 0.01


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        (np.array([[0.5, 0.6]]), [0], "sum to 1"),
        (np.array([[1.2, -0.2]]), [0], "non-negative"),
        (np.array([[0.5, 0.5]]), [2], "labels must be in"),
        (np.array([[0.5, 0.5]]), [0, 1], "shape"),
        (np.array([0.5, 0.5]), [0], "shape"),
        (np.full((1, 2, 2), 0.5), [0], "binary classifier"),
        (np.array([0.5, 1.2]), [0, 1], "non-negative"),  # P(class 1) above 1
    ],
)
def test_bad_inputs_raise_value_error(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        metrics.expected_calibration_error(probs, labels)


def test_one_hot_labels_give_the_same_metrics_as_integer_labels():
    one_hot = np.eye(3)[LABELS]
    for metric in (
        metrics.accuracy,
        metrics.negative_log_likelihood,
        metrics.brier_score,
        metrics.expected_calibration_error,
        metrics.maximum_calibration_error,
    ):
        assert metric(PROBS, one_hot) == pytest.approx(metric(PROBS, LABELS))
    with pytest.raises(ValueError, match="one-hot"):
        metrics.expected_calibration_error(PROBS, np.full((4, 3), 1 / 3))  # soft labels


def test_num_bins_must_be_positive():
    with pytest.raises(ValueError, match="num_bins"):
        metrics.expected_calibration_error(PROBS, LABELS, num_bins=0)


def test_binary_probability_of_class_one_reads_as_two_classes():
    # P(class 1) = 0.9, 0.2, 0.6 with labels 1, 0, 0: top-label confidences
    # 0.9, 0.8, 0.6 (ten bins: three bins of one example), correct, correct, wrong.
    positive, labels = np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0])
    assert metrics.expected_calibration_error(positive, labels, num_bins=10) == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    assert metrics.negative_log_likelihood(positive, labels) == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3
    )
    two_classes = np.stack([1 - positive, positive], axis=1)
    for metric in (
        metrics.accuracy,
        metrics.negative_log_likelihood,
        metrics.brier_score,
        metrics.expected_calibration_error,
        metrics.maximum_calibration_error,
    ):
        assert metric(positive[:, None], labels[:, None]) == pytest.approx(metric(two_classes, labels))
