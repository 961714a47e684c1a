"""The conformal plots draw and write PNGs; their arguments are checked."""

import numpy as np
import pytest

import tfp_uq

pytest.importorskip("matplotlib")

RNG = np.random.default_rng(0)


def test_conformal_plots_write_pngs(tmp_path):
    nominal = np.array([0.8, 0.9, 0.95])
    lower = RNG.normal(size=100)
    calls = {
        "coverage": lambda p: tfp_uq.plots.coverage_vs_nominal(
            nominal, [[0.81, 0.9, 0.94], [0.7, 0.8, 0.9]], num_test=500, labels=["normalized", "absolute"], path=p
        ),
        "widths": lambda p: tfp_uq.plots.interval_width_histogram(lower, lower + RNG.uniform(1, 2, 100), path=p),
        "sizes": lambda p: tfp_uq.plots.set_size_histogram(RNG.uniform(size=(50, 4)) < 0.4, path=p),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        figure = call(path)
        assert figure.axes, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_set_size_histogram_counts_each_size():
    sets = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    bars = tfp_uq.plots.set_size_histogram(sets).axes[0].patches
    assert [bar.get_height() for bar in bars] == [1, 1, 2, 0]


def test_coverage_plot_checks_its_shapes():
    with pytest.raises(ValueError, match="observed must have 3 coverages per method"):
        tfp_uq.plots.coverage_vs_nominal([0.8, 0.9, 0.95], [0.8, 0.9])
    with pytest.raises(ValueError, match="at least one finite interval"):
        tfp_uq.plots.interval_width_histogram([-np.inf], [np.inf])
