"""Rolling coverage and its test against the promised level, against closed forms."""

import numpy as np
import pytest

from tfp_uq import conformal


def test_rolling_coverage_counts_each_window():
    covered = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    report = conformal.rolling_coverage(covered, 0.9, window=3)
    np.testing.assert_allclose(report["coverage"], [2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3])


def test_binomial_p_value_by_hand():
    # 7 of 10 covered at a promised 0.9: P(X <= 7) = 1 - C(10,8) .9^8 .1^2 - C(10,9) .9^9 .1 - .9^10.
    expected = 1 - 45 * 0.9**8 * 0.01 - 10 * 0.9**9 * 0.1 - 0.9**10
    report = conformal.rolling_coverage([True] * 7 + [False] * 3, 0.9, window=10)
    assert report["p_value"][0] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0702, abs=1e-4)


def test_beta_binomial_p_value_by_hand():
    # n = 9 calibration points at 0.9: k = 9, coverage ~ Beta(9, 1). Two new inputs:
    # P(0 covered) = B(9, 3) / B(9, 1) = 1/55, P(1) = 2 B(10, 2) / B(9, 1) = 9/55.
    report = conformal.rolling_coverage([True, False], 0.9, window=2, num_calibration=9)
    assert report["p_value"][0] == pytest.approx(10 / 55, rel=1e-12)
    binomial = conformal.rolling_coverage([True, False], 0.9, window=2)
    assert binomial["p_value"][0] == pytest.approx(1 - 0.81, rel=1e-12)


def test_two_sided_p_value_sums_the_outcomes_no_likelier_than_the_observed():
    # Binomial(2, 0.5): pmf 1/4, 1/2, 1/4; two covered: P(X = 0) + P(X = 2) = 1/2.
    report = conformal.rolling_coverage([True, True], 0.5, window=2, alternative="two-sided")
    assert report["p_value"][0] == pytest.approx(0.5)


def test_beta_binomial_test_keeps_its_level_where_the_binomial_test_does_not():
    # Conformal coverage given one calibration set varies around 1 - alpha; a binomial test ignores that.
    rng = np.random.default_rng(0)
    n, window, trials = 20, 400, 2000
    k = conformal.conformal_rank(n, 0.9)
    rejections = {"beta-binomial": 0, "binomial": 0}
    for _ in range(trials):
        # Uniform scores: the conformal law depends on ranks only.
        threshold = np.sort(rng.uniform(size=n))[k - 1]
        covered = rng.uniform(size=window) <= threshold
        rejections["beta-binomial"] += conformal.rolling_coverage(covered, 0.9, window, n)["p_value"][0] < 0.05
        rejections["binomial"] += conformal.rolling_coverage(covered, 0.9, window)["p_value"][0] < 0.05
    # Level 0.05 within 3.5 binomial standard errors of 2000 trials; the binomial test rejects far more.
    assert rejections["beta-binomial"] / trials < 0.05 + 3.5 * np.sqrt(0.05 * 0.95 / trials)
    assert rejections["binomial"] / trials > 0.15


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="window must be at most"):
        conformal.rolling_coverage([True] * 3, 0.9, window=4)
    with pytest.raises(ValueError, match="coverage must be in the open interval"):
        conformal.rolling_coverage([True] * 3, 1.0, window=2)
    with pytest.raises(ValueError, match="covered must hold booleans"):
        conformal.rolling_coverage([0.5, 1.0], 0.9, window=1)
    with pytest.raises(ValueError, match="num_calibration=5 is too few"):
        conformal.rolling_coverage([True] * 3, 0.9, window=2, num_calibration=5)
    with pytest.raises(ValueError, match="alternative must be one of"):
        conformal.rolling_coverage([True] * 3, 0.9, window=2, alternative="greater")
