import math

import numpy as np
import pytest
from scipy import integrate, stats

from tfp_uq import metrics


def test_rmse_and_gaussian_nll_by_hand():
    assert metrics.rmse([1.0, 3.0], [0.0, 0.0]) == pytest.approx(math.sqrt(5.0))
    expected = 0.5 * 1.0 + math.log(2.0) + 0.5 * math.log(2 * math.pi)
    assert metrics.gaussian_nll([2.0], [0.0], [2.0]) == pytest.approx(expected)


@pytest.mark.parametrize("y, mean, std", [(0.3, 0.0, 1.0), (2.5, -1.0, 0.7), (-4.0, 1.0, 3.0)])
def test_crps_equals_numerical_integration(y, mean, std):
    def squared_gap(t):
        return (stats.norm.cdf(t, mean, std) - (t >= y)) ** 2

    lower, upper = mean - 12 * std, mean + 12 * std
    numeric = integrate.quad(squared_gap, lower, y, limit=200)[0] + integrate.quad(squared_gap, y, upper, limit=200)[0]
    assert metrics.crps_gaussian([y], [mean], [std]) == pytest.approx(numeric, rel=1e-6)


def test_picp_and_width_by_hand():
    z95 = stats.norm.ppf(0.975)
    y = np.array([0.0, 1.0, 2.5, -3.0])  # |z| = 0, 1, 2.5, 3 with std 1
    assert metrics.picp(y, np.zeros(4), np.ones(4), level=0.95) == 0.5
    assert metrics.mean_interval_width([1.0, 2.0], level=0.95) == pytest.approx(3 * z95)


def test_calibration_curve_is_diagonal_for_calibrated_and_not_for_overconfident():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=20000)
    std = rng.uniform(0.5, 2.0, size=20000)
    y = rng.normal(mean, std)
    assert metrics.miscalibration_area(y, mean, std) < 0.01
    # Overconfident by 3: observed level at p is Phi(Phi^-1(p) / 3).
    exact = integrate.quad(lambda p: abs(stats.norm.cdf(stats.norm.ppf(p) / 3) - p), 0, 1)[0]
    assert metrics.miscalibration_area(y, mean, std / 3) == pytest.approx(exact, abs=0.01)
    expected, observed = metrics.calibration_curve(y, mean, std, num_levels=9)
    np.testing.assert_allclose(expected, np.arange(1, 10) / 10)
    np.testing.assert_allclose(observed, expected, atol=0.02)


def test_negative_std_and_bad_level_raise():
    with pytest.raises(ValueError, match="std"):
        metrics.gaussian_nll([0.0], [0.0], [-1.0])
    with pytest.raises(ValueError, match="level"):
        metrics.picp([0.0], [0.0], [1.0], level=1.5)
    with pytest.raises(ValueError, match="same shape"):
        metrics.rmse([0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="mean must be finite"):
        metrics.rmse([0.0, 1.0], [0.0, np.nan])
    with pytest.raises(TypeError, match="y must be an array of numbers"):
        metrics.crps_gaussian("a", [0.0], [1.0])
