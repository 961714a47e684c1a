import numpy as np
import pytest

import tfp_uq

pytest.importorskip("matplotlib")

RNG = np.random.default_rng(0)


def _is_png(path):
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_plot_writes_a_png(tmp_path):
    probs = RNG.dirichlet(np.ones(3), 200)
    labels = RNG.integers(0, 3, 200)
    y, mean, std = RNG.normal(size=100), RNG.normal(size=100), RNG.uniform(0.5, 1.5, 100)
    calls = {
        "reliability": lambda p: tfp_uq.plots.reliability_diagram(probs, labels, path=p),
        "calibration": lambda p: tfp_uq.plots.calibration_curve(y, mean, std, path=p),
        "risk": lambda p: tfp_uq.plots.risk_coverage(1 - probs.max(1), probs.argmax(1) != labels, path=p),
        "band": lambda p: tfp_uq.plots.predictive_band(
            np.linspace(0, 1, 100), mean, std, x_train=[0.5], y_train=[0.0], path=p
        ),
        "hist": lambda p: tfp_uq.plots.uncertainty_histogram(RNG.normal(size=50), RNG.normal(1, 1, 50), path=p),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        figure = call(path)
        assert figure.axes, name
        assert _is_png(path), name
