"""LaplacePosterior: the predictive against Monte Carlo and quadrature, persistence, and traceability."""

import functools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import laplace

NUM_MC = 100_000


def _seed(value):
    return tf.constant([value, 0], tf.int32)


@pytest.fixture(scope="module")
def binary():
    """A logistic regression on 2 features (its loss takes logits) and its full GLM Laplace posterior."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype("float32")
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.5 * rng.normal(size=60) > 0).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.1), keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y, epochs=30, batch_size=60, verbose=0)
    posterior = laplace.fit(model, (x, y), subset="all", hessian="full", verbose=0)
    x_test = np.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 1.0], [3.0, -3.0], [0.5, 4.0]], "float32")
    return posterior, x_test


def _expected_sigmoid(mean, variance, points=200):
    """E[sigmoid(f)] for f ~ N(mean, variance) by Gauss-Hermite quadrature (exact to ~1e-12 here)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    f = mean[:, None] + np.sqrt(variance)[:, None] * nodes[None]
    return (weights[None] / np.sqrt(2 * np.pi) * (1 / (1 + np.exp(-f)))).sum(-1)


def test_glm_samples_have_the_closed_form_function_moments(binary):
    posterior, x = binary
    mean, variance = (np.asarray(t, "float64")[:, 0] for t in posterior.function_moments(x))
    samples = np.asarray(posterior.sample_outputs(x, NUM_MC, _seed(1)), "float64")[..., 0]  # logits
    assert samples.shape == (NUM_MC, len(x))
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 4 * np.sqrt(variance / NUM_MC))
    np.testing.assert_array_less(np.abs(samples.var(0) - variance), 4 * variance * np.sqrt(2 / NUM_MC))


def test_probit_predictive_matches_monte_carlo_over_100000_weight_samples(binary):
    posterior, x = binary
    mean, variance = (np.asarray(t, "float64")[:, 0] for t in posterior.function_moments(x))
    exact = _expected_sigmoid(mean, variance)
    probs = 1 / (1 + np.exp(-np.asarray(posterior.sample_outputs(x, NUM_MC, _seed(2)), "float64")[..., 0]))
    # Monte Carlo over weights is E[sigmoid(f)] within its error ...
    np.testing.assert_array_less(np.abs(probs.mean(0) - exact), 4 * probs.std(0) / np.sqrt(NUM_MC) + 1e-6)
    # ... and the probit approximation (MacKay 1992) is within 0.01 of it at these variances (0.02 to 1.4).
    probit = np.asarray(posterior.exact_fields(x)[0]["probs"], "float64")
    np.testing.assert_allclose(probit.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probit[:, 1], 1 / (1 + np.exp(-mean / np.sqrt(1 + np.pi / 8 * variance))), rtol=1e-5)
    np.testing.assert_array_less(np.abs(probit[:, 1] - probs.mean(0)), 0.01)
    assert variance.max() > 0.3  # the posterior is wide enough for the link to matter


def _softmax_regression(predictive):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 3)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(3, 3)) + rng.normal(size=(90, 3)), axis=1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x, y, epochs=20, batch_size=90, verbose=0)
    return model, (x, y)


def test_nn_and_glm_predictives_agree_for_a_model_linear_in_its_weights():
    model, data = _softmax_regression("glm")
    kwargs = {"subset": "all", "hessian": "kron", "prior_precision": 1.0, "verbose": 0}
    glm = laplace.fit(model, data, predictive="glm", link="mc", **kwargs)
    nn = laplace.fit(model, data, predictive="nn", **kwargs)
    x = data[0][:7]
    # Same seed, same weight samples: the linearised logits are the network's logits.
    np.testing.assert_allclose(nn.sample_outputs(x, 500, _seed(3)), glm.sample_outputs(x, 500, _seed(3)), atol=2e-6)
    assert nn.exact_fields(x) is None and glm.exact_fields(x) is None  # Monte Carlo link: no closed form


def test_samples_are_stateless_in_the_seed():
    model, data = _softmax_regression("glm")
    posterior = laplace.fit(model, data, subset="all", hessian="diag", predictive="nn", verbose=0)
    x = data[0][:4]
    first, again, other = (posterior.sample_outputs(x, 50, _seed(s)) for s in (5, 5, 6))
    np.testing.assert_array_equal(first, again)
    assert np.abs(np.asarray(first) - np.asarray(other)).max() > 1e-3


@pytest.fixture(scope="module")
def heteroscedastic():
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, size=(128, 1)).astype("float32")
    y = (np.sin(2 * x) + (0.1 + 0.2 * np.abs(x)) * rng.normal(size=x.shape)).astype("float32")
    from tfp_uq.layers import GaussianHead
    from tfp_uq.losses import GaussianNLL

    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(2), GaussianHead()]
    )
    model.compile(keras.optimizers.Adam(0.02), GaussianNLL(), jit_compile=False)
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    return model, (x, y)


def test_gaussian_head_predictive_splits_noise_and_weight_uncertainty(heteroscedastic):
    model, data = heteroscedastic
    posterior = laplace.fit(model, data, verbose=0)  # last-layer KFAC, marglik prior, GLM
    assert posterior.noise_scale is None and posterior.layer_names == [model.layers[1].name]
    x = np.linspace(-3, 3, 9, dtype="float32")[:, None]
    fields = posterior.exact_fields(x)[0]
    loc, scale = np.split(np.asarray(model(x)), 2, axis=-1)
    np.testing.assert_allclose(fields["mean"], loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fields["aleatoric_variance"], scale**2, rtol=1e-5)
    np.testing.assert_allclose(
        fields["variance"], fields["aleatoric_variance"] + fields["epistemic_variance"], rtol=1e-6
    )
    samples = np.asarray(posterior.sample_outputs(x, 20_000, _seed(7)), "float64")
    np.testing.assert_allclose(samples[..., 1], np.broadcast_to(scale[None, :, 0], samples.shape[:2]), rtol=1e-6)
    epistemic = np.asarray(fields["epistemic_variance"], "float64")[:, 0]
    np.testing.assert_array_less(np.abs(samples[..., 0].var(0) - epistemic), 4 * epistemic * np.sqrt(2 / 20_000))


def test_regression_learns_one_noise_scale_that_its_samples_carry(regression_data):
    x, y = regression_data
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    features = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    weights = np.linalg.lstsq(features, y, rcond=None)[0]
    model.layers[0].set_weights([weights[:3, None].astype("float32"), weights[3:].astype("float32")])
    posterior = laplace.fit(model, (x, y), subset="all", hessian="full", verbose=0)
    residual = np.sqrt(np.mean((features @ weights - y) ** 2))
    # The evidence-optimal noise sits near the residual scale (it also pays for the 4 fitted weights).
    assert posterior.noise_scale == pytest.approx(residual, rel=0.05)
    samples = np.asarray(posterior.sample_outputs(x[:3], 10, _seed(0)))
    np.testing.assert_allclose(samples[..., 1], posterior.noise_scale, rtol=1e-6)
    np.testing.assert_allclose(
        posterior.exact_fields(x[:3])[0]["aleatoric_variance"], posterior.noise_scale**2, rtol=1e-5
    )


def test_save_then_load_gives_identical_predictions(heteroscedastic, tmp_path):
    model, data = heteroscedastic
    posterior = laplace.fit(model, data, subset="all", hessian="diag", predictive="nn", verbose=0)
    path = os.path.join(tmp_path, "posterior")
    tfp_uq.posterior.save(posterior, path)
    loaded = tfp_uq.posterior.load(path)
    assert isinstance(loaded, laplace.LaplacePosterior) and loaded.model is not model
    x = data[0][:5]
    np.testing.assert_array_equal(loaded.sample_outputs(x, 30, _seed(9)), posterior.sample_outputs(x, 30, _seed(9)))
    assert loaded.prior_precision == posterior.prior_precision
    assert loaded.log_marginal_likelihood() == posterior.log_marginal_likelihood()
    glm = laplace.fit(model, data, verbose=0)
    glm.save(path)  # the protocol's save, as a method
    loaded = laplace.LaplacePosterior.load(path)
    for key, value in glm.exact_fields(x)[0].items():
        np.testing.assert_array_equal(loaded.exact_fields(x)[0][key], value)


def test_load_refuses_a_model_with_other_weights(heteroscedastic, tmp_path):
    model, data = heteroscedastic
    path = os.path.join(tmp_path, "posterior")
    posterior = laplace.fit(model, data, verbose=0)
    config = posterior.save_state(str(tmp_path))
    other = keras.models.clone_model(model)
    other.set_weights([w + 1.0 for w in model.get_weights()])
    with pytest.raises(ValueError, match="differ from those the posterior was fitted at"):
        laplace.LaplacePosterior.from_state(other, str(tmp_path), config)
    tfp_uq.posterior.save(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]), path)
    with pytest.raises(ValueError, match="holds a ModelPosterior, not a LaplacePosterior"):
        laplace.LaplacePosterior.load(path)


@pytest.mark.slow
def test_predictive_traces_under_xla_with_tensorflow_ops_only(heteroscedastic):
    model, data = heteroscedastic
    x = tf.constant(data[0][:8])
    compiled = {}
    for predictive in ("glm", "nn"):
        posterior = laplace.fit(model, data, predictive=predictive, verbose=0)
        samples = tf.function(functools.partial(posterior.sample_outputs, num_samples=16), jit_compile=True)
        compiled[predictive] = posterior, samples
        functions = [samples.get_concrete_function(x, seed=tf.TensorSpec([2], tf.int32))]
        if predictive == "glm":
            functions.append(tf.function(posterior.exact_fields, jit_compile=True).get_concrete_function(x))
        for function in functions:
            kinds = {op.type for op in function.graph.get_operations()}
            assert not kinds & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}, kinds
    # The default predictive also runs compiled by XLA, with the samples of the uncompiled one (same seed).
    posterior, samples = compiled["glm"]
    np.testing.assert_allclose(samples(x, seed=_seed(0)), posterior.sample_outputs(x, 16, _seed(0)), rtol=1e-5)


MEMORY_SCRIPT = """
import json, resource, time, numpy as np, keras
import tfp_uq
from tfp_uq import laplace
rng = np.random.default_rng(0)
x = rng.normal(size=(1024, 2048)).astype("float32")
y = rng.integers(0, 1000, size=1024)
model = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(1000, activation="softmax")])
model.compile("sgd", "sparse_categorical_crossentropy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
posterior = laplace.fit(model, (x, y), batch_size=256, verbose=0)
seconds = time.perf_counter() - start
probs = np.asarray(posterior.exact_fields(x[:64])[0]["probs"])
samples = np.asarray(posterior.sample_outputs(x[:16], posterior.max_samples_per_call, np.array([0, 0], "int32")))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stats = posterior.structure.statistics
print(json.dumps({"rows": stats["rows_0"].shape, "columns": stats["columns_0"].shape, "fit_seconds": seconds,
                  "peak_gib": (after - before) / 2**20, "probs_error": float(np.abs(probs.sum(-1) - 1).max()),
                  "samples": samples.shape, "finite": bool(np.isfinite(samples).all() and np.isfinite(probs).all())}))
"""


@pytest.mark.slow
def test_last_layer_kfac_of_a_2048_by_1000_head_fits_in_4_gib():
    # A ResNet-50 head without its backbone: 2048 features into 1000 classes, factors of 2049^2 and 1000^2.
    completed = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["rows"] == [2049, 2049] and result["columns"] == [1000, 1000]
    assert result["peak_gib"] < 4.0, result  # growth of the peak resident memory over the fit and predictions
    assert result["probs_error"] < 1e-4 and result["finite"], result
    assert result["samples"][1:] == [16, 1000]
