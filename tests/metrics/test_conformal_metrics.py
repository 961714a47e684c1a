"""Conformal interval and set metrics against hand-computed numbers."""

import numpy as np
import pytest

from tfp_uq import metrics


def test_interval_coverage_and_width_by_hand():
    y = np.array([0.0, 2.0, -1.0, 1.0])
    lower, upper = np.array([-1.0, -1.0, -1.0, 1.5]), np.array([1.0, 1.0, 0.0, 2.5])  # ends count as inside
    np.testing.assert_array_equal(metrics.in_interval(y, lower, upper), [True, False, True, False])
    assert metrics.interval_coverage(y, lower, upper) == 0.5
    assert metrics.mean_width(lower, upper) == pytest.approx((2 + 2 + 1 + 1) / 4)
    assert metrics.mean_width([-np.inf], [0.0]) == np.inf
    # Targets (n,) against intervals (n, 1).
    assert metrics.interval_coverage(y, lower[:, None], upper[:, None]) == 0.5


def test_set_coverage_and_size_by_hand():
    sets = np.array([[True, True, False], [False, False, False], [False, True, True]])
    labels = np.array([1, 0, 0])
    np.testing.assert_array_equal(metrics.in_set(sets, labels), [True, False, False])
    assert metrics.set_coverage(sets, labels) == pytest.approx(1 / 3)
    assert metrics.mean_set_size(sets) == pytest.approx(4 / 3)


def test_group_coverage_by_hand():
    covered = np.array([True, False, True, True, False])
    table = metrics.group_coverage(covered, ["b", "a", "b", "a", "a"])
    assert table["group"].tolist() == ["a", "b"]
    np.testing.assert_allclose(table["coverage"], [1 / 3, 1.0])
    np.testing.assert_array_equal(table["count"], [3, 2])


def test_size_stratified_coverage_by_set_size_and_by_width_bins():
    covered = np.array([True, False, True, True, True, False])
    table = metrics.size_stratified_coverage(covered, [1, 1, 2, 2, 3, 1])
    np.testing.assert_array_equal(table["lower"], [1, 2, 3])
    np.testing.assert_allclose(table["coverage"], [1 / 3, 1.0, 1.0])
    np.testing.assert_array_equal(table["count"], [3, 2, 1])
    widths = [0.5, 0.1, 0.3, 0.9, 0.7, 0.2]  # by rank: {0.1, 0.2, 0.3} and {0.5, 0.7, 0.9}
    table = metrics.size_stratified_coverage(covered, widths, num_bins=2)
    np.testing.assert_allclose(table["lower"], [0.1, 0.5])
    np.testing.assert_allclose(table["upper"], [0.3, 0.9])
    np.testing.assert_allclose(table["coverage"], [1 / 3, 1.0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="lower and upper must have one shape"):
        metrics.interval_coverage([0.0, 1.0], [0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="prediction_set must be a boolean mask"):
        metrics.mean_set_size([[1, 0]])
    with pytest.raises(ValueError, match=r"labels must be integer classes in \[0, 1\]"):
        metrics.set_coverage(np.ones((2, 2), bool), [0, 2])
    with pytest.raises(ValueError, match="covered must be booleans"):
        metrics.group_coverage([1, 0], [0, 1])
    with pytest.raises(ValueError, match="y must not contain NaN"):
        metrics.in_interval([np.nan], [0.0], [1.0])
