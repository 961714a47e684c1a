"""A LaplacePosterior through the public entry points: predict, export, conformal calibration, save / load."""

import math

import keras
import numpy as np
import pytest
from _serving import serve_in_fresh_process

import tfp_uq
from tfp_uq import laplace


@pytest.fixture(scope="module")
def iris():
    """An MLP trained on iris (standardised) and its default posterior: last-layer KFAC, marglik prior, GLM probit."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x[:100], y[:100], epochs=30, batch_size=32, verbose=0)
    return laplace.fit(model, (x[:100], y[:100]), verbose=0), x[100:]


@pytest.fixture(scope="module")
def sine():
    """An MSE-trained MLP on y = sin(2x) + 0.2 noise and its posterior over all layers (diag, marglik noise)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(320, 1)).astype("float32")
    y = (np.sin(2 * x) + 0.2 * rng.normal(size=x.shape)).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.02), "mse", jit_compile=False)
    model.fit(x[:160], y[:160], epochs=40, batch_size=32, verbose=0)
    posterior = laplace.fit(model, (x[:160], y[:160]), subset="all", hessian="diag", verbose=0)
    return posterior, (x[160:240], y[160:240]), (x[240:], y[240:])


def _serve(path, x, tmp_path):
    served = serve_in_fresh_process(path, x, tmp_path)
    assert not served["tfp_uq_imported"]
    return {key: np.asarray(value) for key, value in served["outputs"].items()}


def test_predict_gives_the_probit_probabilities_in_place_of_the_monte_carlo_ones(iris):
    posterior, x = iris
    result = tfp_uq.predict(posterior, x, num_samples=200, seed=0, return_samples=True)
    assert result.task == "classification" and result.probs.shape == (50, 3)
    mean, variance = (np.asarray(t, "float64") for t in posterior.function_moments(x))
    probit = np.exp(mean / np.sqrt(1 + math.pi / 8 * variance))
    np.testing.assert_allclose(result.probs, probit / probit.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    # The samples are the linearised model's probabilities: their mean is not the probit closed form ...
    assert np.abs(result.samples.mean(0) - result.probs).max() > 1e-4
    # ... and the entropies follow the replaced probabilities; the epistemic part is positive.
    entropy = -(result.probs * np.log(result.probs)).sum(-1)
    np.testing.assert_allclose(result.total_entropy, entropy, rtol=1e-5)
    assert (result.mutual_information > 0).all()


def test_predict_gives_the_closed_form_regression_moments(sine):
    posterior, (x, _), _ = sine
    result = tfp_uq.predict(posterior, x, num_samples=20, seed=0)
    assert result.task == "regression"
    np.testing.assert_allclose(result.mean, posterior.model(x), rtol=1e-5, atol=1e-6)  # the GLM mean is f(x; theta*)
    np.testing.assert_allclose(result.aleatoric_variance, posterior.noise_scale**2, rtol=1e-5)
    fields = posterior.exact_fields(x)[0]
    np.testing.assert_allclose(result.epistemic_variance, fields["epistemic_variance"], rtol=1e-5)
    np.testing.assert_allclose(result.variance, result.aleatoric_variance + result.epistemic_variance, rtol=1e-6)
    assert 0.1 < posterior.noise_scale < 0.3  # the data's noise is 0.2
    # Epistemic variance grows outside the data's [-2, 2].
    far = tfp_uq.predict(posterior, np.array([[0.0], [5.0]], "float32"), num_samples=2, seed=0)
    assert far.epistemic_variance[1, 0] > 3 * far.epistemic_variance[0, 0]  # 5.5x here


@pytest.mark.slow
def test_exports_serve_the_closed_forms_without_tfp_uq(iris, sine, tmp_path):
    posterior, x = iris
    path = tfp_uq.export(posterior, tmp_path / "classifier", num_samples=64, seed=3)
    served = _serve(path, x, tmp_path)
    expected = tfp_uq.predict(posterior, x, num_samples=64, seed=3, jit_compile=True)
    np.testing.assert_allclose(served["probs"], expected.probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(served["mutual_information"], expected.mutual_information, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(served["predicted_class"], expected.predicted_class)

    posterior, (x, _), _ = sine
    path = tfp_uq.export(posterior, tmp_path / "regressor", num_samples=8, seed=0)
    served = _serve(path, x, tmp_path)
    expected = tfp_uq.predict(posterior, x, num_samples=8, seed=0)
    np.testing.assert_allclose(served["mean"], expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["epistemic_std"] ** 2, expected.epistemic_variance, rtol=1e-4)
    np.testing.assert_allclose(served["aleatoric_std"], posterior.noise_scale, rtol=1e-5)


def test_conformal_calibration_on_top_and_save_load_keep_every_prediction(sine, tmp_path):
    posterior, (x_cal, y_cal), (x_test, _) = sine
    calibrator = tfp_uq.conformal.calibrate(posterior, x_cal, y_cal, coverage=0.9, score="absolute", num_samples=4)
    # Split conformal by hand: the ceil((n + 1) 0.9)-th smallest absolute residual of the GLM mean.
    residuals = np.sort(np.abs(y_cal - np.asarray(posterior.model(x_cal)))[:, 0])
    quantile = residuals[math.ceil((len(residuals) + 1) * 0.9) - 1]
    np.testing.assert_allclose(np.asarray(calibrator.quantiles).reshape(-1), quantile, rtol=1e-5)
    result = calibrator.predict(x_test, seed=0)
    np.testing.assert_allclose(result.upper - result.lower, 2 * quantile, rtol=1e-5)

    tfp_uq.posterior.save(calibrator, tmp_path / "calibrated")
    loaded = tfp_uq.posterior.load(tmp_path / "calibrated")
    assert isinstance(loaded.posterior, laplace.LaplacePosterior)
    again = loaded.predict(x_test, seed=0)
    for field in ("mean", "lower", "upper", "epistemic_variance", "aleatoric_variance"):
        np.testing.assert_array_equal(getattr(again, field), getattr(result, field))

    tfp_uq.posterior.save(posterior, tmp_path / "posterior")
    reloaded = tfp_uq.posterior.load(tmp_path / "posterior")
    assert reloaded.get_config() == posterior.get_config()
    first, second = (tfp_uq.predict(p, x_test, num_samples=16, seed=5) for p in (posterior, reloaded))
    for field in ("mean", "variance", "epistemic_variance", "aleatoric_variance"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
