"""The Bayesian layers on Keras's JAX backend (a subprocess: the backend is fixed at import)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax", reason="the test extra installs jax")

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "jax_run.py")
LAYERS = ["DenseFlipout", "DenseReparameterization", "DenseLocalReparameterization", "Conv2DFlipout"]


@pytest.fixture(scope="module")
def summary():
    completed = subprocess.run(
        [sys.executable, SCRIPT, *LAYERS],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_layer_trains_predicts_and_round_trips_on_jax(summary, layer):
    result = summary[layer]
    # Digits, 8 epochs with KL annealing: a working model, not chance (0.1).
    assert result["accuracy"] > 0.85
    assert result["val_ece"][-1] < result["val_ece"][0]
    assert result["kl_weight"] == pytest.approx(1 / 1400, rel=1e-6)
    # Sampling is on (the samples disagree), and seeded: same seed, same draws.
    assert result["mutual_information"] > 0.0
    assert result["same_seed_max_diff"] == 0.0
    assert result["reloaded_max_diff"] == 0.0
    np.testing.assert_allclose(result["kl"], result["kl_closed_form"], rtol=1e-5)
