"""The Bayesian layers on Keras's JAX backend (a subprocess: the backend is fixed at import)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax", reason="the test extra installs jax")

SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "jax_run.py")
LAYERS = [
    "DenseFlipout",
    "DenseReparameterization",
    "DenseLocalReparameterization",
    "Conv2DFlipout",
    "Conv2DTransposeFlipout",
    "DepthwiseConv2DFlipout",
    "SeparableConv2DFlipout",
    "EinsumDenseFlipout",
    "EmbeddingReparameterization",
    "LSTMFlipout",
    "GRUReparameterization",
]


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


# ----------------------------------------------------------------- the other entry points: HMC, export, the CLI
PARITY_SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "jax_parity.py")
SERVE_SCRIPT = os.path.join(os.path.dirname(__file__), "_scripts", "serve_exports.py")


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jax_parity")
    completed = subprocess.run(
        [sys.executable, PARITY_SCRIPT, str(folder)], capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served(parity):
    """The HMC export's outputs and two requests to the Flipout export, served by TensorFlow in one process
    without tfp_uq (nor JAX's Keras backend)."""
    folder, _ = parity
    exports = ["hmc_export", "hmc_x.npy", "flipout_export", "export_x.npy", "flipout_export", "export_x.npy"]
    completed = subprocess.run(
        [sys.executable, SERVE_SCRIPT, *(str(folder / name) for name in exports)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": "", "KERAS_BACKEND": "tensorflow"},
        cwd=str(folder),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not result["tfp_uq_imported"]
    return [{k: np.asarray(v) for k, v in outputs.items()} for outputs in result["outputs"]]


@pytest.mark.slow
def test_sample_posterior_on_jax_recovers_the_conjugate_posterior(parity):
    _, summary = parity
    hmc = summary["hmc"]
    x, y = np.asarray(hmc["x"], "float64"), np.asarray(hmc["y"], "float64")
    precision = np.eye(3) + x.T @ x / 0.5**2
    covariance = np.linalg.inv(precision)
    mean = (covariance @ x.T @ y / 0.5**2).ravel()
    diagnostics = hmc["diagnostics"]
    np.testing.assert_allclose(
        hmc["draws_mean"], mean, atol=5 * np.sqrt(covariance.diagonal().max() / diagnostics["min_ess"])
    )
    # A variance estimate's relative standard error is sqrt(2 / ESS) of the squared deviations: within 4 of them.
    tolerance = 4 * np.sqrt(2 / np.asarray(hmc["square_ess"]))
    assert np.all(np.abs(np.diagonal(hmc["draws_cov"]) / covariance.diagonal() - 1) < tolerance), hmc["square_ess"]
    assert diagnostics["max_rhat"] < 1.05 and diagnostics["num_divergences"] == 0
    assert 0.6 < diagnostics["acceptance_rate"] <= 1.0 and diagnostics["mean_leapfrog_steps"] >= 1


@pytest.mark.slow
def test_posterior_samples_predict_save_and_resume_on_jax(parity):
    _, summary = parity
    hmc = summary["hmc"]
    # The predictive over all draws: the mean and variance of x @ w over the draws, plus the fixed noise.
    np.testing.assert_allclose(hmc["predict_mean"], hmc["draws_predict_mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hmc["predict_epistemic"], hmc["draws_predict_variance"], rtol=1e-3)
    np.testing.assert_allclose(hmc["predict_aleatoric"], 0.25)
    assert hmc["restored_max_diff"] == 0.0
    # Killed after its first chunk of 50 steps and started again: the uninterrupted run's draws, bit for bit.
    assert hmc["killed_after_steps"] == [50]
    assert hmc["resumed_max_diff"] == 0.0


@pytest.mark.slow
def test_hmc_export_from_jax_serves_the_posterior_predictive(parity, served):
    _, summary = parity
    hmc, outputs = summary["hmc"], served[0]
    np.testing.assert_allclose(outputs["mean"].ravel(), hmc["predict_mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["epistemic_std"].ravel() ** 2, hmc["predict_epistemic"], rtol=1e-3)
    np.testing.assert_allclose(outputs["aleatoric_std"].ravel(), 0.5, rtol=1e-5)


@pytest.mark.slow
def test_flipout_export_from_jax_serves_predict_and_advances_its_seed(parity, served):
    _, summary = parity
    outputs, later = served[1], served[2]
    # Same seed, same JAX computation (converted by jax2tf): the first request equals tfp_uq.predict.
    np.testing.assert_allclose(outputs["probs"], summary["export"]["probs"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        outputs["mutual_information"], summary["export"]["mutual_information"], rtol=1e-3, atol=1e-6
    )
    np.testing.assert_array_equal(outputs["refer"], outputs["entropy"] > 0.9)
    # The serving seed is saved state that each request advances: the next request draws other samples.
    assert np.max(np.abs(later["probs"] - outputs["probs"])) > 1e-4


@pytest.mark.slow
def test_cli_fits_calibrates_and_evaluates_ivon_on_jax(parity):
    _, summary = parity
    cli = summary["cli"]
    assert cli["fit"] == 0 and cli["evaluate"] == 0 and cli["accuracy"] > 0.8
    # IVON's posterior, saved and loaded on JAX, inside a conformal calibrator at 90% coverage from 24 rows: its
    # coverage given the calibration rows is Beta(23, 2), under 0.8 with probability 3.3% (TensorFlow gives the
    # same sets, 0.8133, seed for seed).
    assert cli["conformal_coverage"] >= 0.8
    assert "prediction_set" in cli["columns"]
    assert cli["build_native"] == 1  # refused: the kernels are TensorFlow's
