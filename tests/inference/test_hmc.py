import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq.inference import PosteriorSamples, sample_posterior

NOISE = 0.5


def _linear_data(n=100, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + NOISE * rng.normal(size=(n, 1))).astype("float32")
    return x, y


@pytest.fixture(scope="module")
def linear_posterior():
    x, y = _linear_data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    posterior = sample_posterior(
        model,
        x,
        y,
        noise_scale=NOISE,
        prior=tfp_uq.priors.Normal(0.0, 1.0),
        num_chains=4,
        num_burnin=300,
        num_results=500,
        seed=1,
        progress=False,
    )
    return x, y, model, posterior


def test_nuts_recovers_conjugate_linear_regression_posterior(linear_posterior):
    x, y, _, posterior = linear_posterior
    precision = np.eye(3) + x.T.astype("float64") @ x / NOISE**2
    covariance = np.linalg.inv(precision)
    mean = (covariance @ x.T @ y / NOISE**2).ravel()
    draws = posterior.samples[0].reshape(-1, 3)
    ess = posterior.diagnostics["min_ess"]
    # Monte Carlo standard error of the mean is sd / sqrt(ESS).
    np.testing.assert_allclose(draws.mean(0), mean, atol=5 * np.sqrt(covariance.diagonal().max() / ess))
    np.testing.assert_allclose(np.cov(draws.T), covariance, atol=0.25 * covariance.diagonal().max())
    np.testing.assert_allclose(np.cov(draws.T).diagonal(), covariance.diagonal(), rtol=0.2)
    assert posterior.diagnostics["max_rhat"] < 1.02
    assert posterior.diagnostics["num_divergences"] == 0


def test_posterior_predictive_and_save_load(linear_posterior, tmp_path):
    x, _, model, posterior = linear_posterior
    result = posterior.predict(x[:5])
    draws = posterior.samples[0].reshape(-1, 3)
    np.testing.assert_allclose(result.mean.ravel(), x[:5] @ draws.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.aleatoric_variance, NOISE**2)
    np.testing.assert_allclose(result.epistemic_variance.ravel(), (x[:5] @ draws.T).var(1), rtol=1e-3)
    posterior.save(tmp_path / "posterior.npz")
    restored = PosteriorSamples.load(tmp_path / "posterior.npz", model)
    np.testing.assert_array_equal(restored.samples[0], posterior.samples[0])
    assert restored.diagnostics["min_ess"] == posterior.diagnostics["min_ess"]
    np.testing.assert_allclose(restored.predict(x[:5]).mean, result.mean)


@pytest.mark.slow
def test_bnn_chains_agree_and_predictive_covers_at_nominal_rate():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(60, 1)).astype("float32")
    y = (np.sin(2 * x) + 0.1 * rng.normal(size=x.shape)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.02), "mse")
    model.fit(x, y, epochs=300, batch_size=60, verbose=0)  # MAP-like start
    posterior = sample_posterior(
        model, x, y, noise_scale=0.1, num_chains=4, num_burnin=400, num_results=400, seed=1, progress=False
    )
    assert posterior.diagnostics["max_rhat"] < 1.05
    x_test = np.linspace(-1.8, 1.8, 400)[:, None].astype("float32")
    y_test = np.sin(2 * x_test) + 0.1 * rng.normal(size=x_test.shape)
    result = posterior.predict(x_test)
    coverage = np.mean(np.abs(y_test - result.mean) < 1.96 * result.std)
    assert 0.88 < coverage < 0.99


def test_classification_likelihood_runs_and_predicts():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.5, 1, (40, 2)), rng.normal(1.5, 1, (40, 2))]).astype("float32")
    labels = np.repeat([0, 1], 40)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    posterior = sample_posterior(
        model,
        x,
        labels,
        likelihood="categorical",
        kernel="hmc",
        num_chains=2,
        num_burnin=150,
        num_results=150,
        seed=0,
        jit_compile=False,  # the likelihood is under test, not XLA (linear_posterior's chains run under it): ~4x faster
        progress=False,
    )
    result = posterior.predict(x)
    assert result.task == "classification"
    assert tfp_uq.metrics.accuracy(result.probs, labels) > 0.9
    assert np.all(result.mutual_information >= 0)


@pytest.mark.parametrize("from_logits", [False, True])
def test_one_unit_categorical_likelihood_is_bernoulli(from_logits):
    from tfp_uq.inference.hmc import _Likelihood

    z = np.array([[0.3], [-1.2], [2.0]], "float32")
    labels = np.array([1, 0, 0])
    p = 1 / (1 + np.exp(-z[:, 0].astype("float64")))
    expected = np.sum(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    likelihood = _Likelihood("categorical", None, from_logits)
    likelihood.check_shapes(labels, z.shape)  # labels 0 and 1 fit one unit
    outputs = z if from_logits else 1 / (1 + np.exp(-z))
    assert float(likelihood.log_prob(labels, outputs)) == pytest.approx(expected, rel=1e-5)


def test_unknown_noise_scale_is_sampled():
    x, y = _linear_data(n=80)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    # One chain: also covers the path without vectorisation over chains.
    posterior = sample_posterior(
        model, x, y, num_chains=1, num_burnin=200, num_results=300, seed=2, jit_compile=False, progress=False
    )
    assert abs(np.median(posterior.noise_scale) - NOISE) < 0.1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"kernel": "gibbs"}, ValueError, "kernel"),
        ({"likelihood": "poisson"}, ValueError, "likelihood"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"prior": tfp_uq.priors.HierarchicalNormal()}, ValueError, "prior"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    x, y = _linear_data(n=10)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(error, match=message):
        sample_posterior(model, x, y, progress=False, **kwargs)


def test_shape_mismatch_and_non_finite_start_raise():
    x, y = _linear_data(n=10)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="outputs"):
        sample_posterior(model, x, y, progress=False)
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    classifier.layers[0].kernel.assign(np.full((3, 2), np.nan, "float32"))
    with pytest.raises(ValueError, match="not finite"):
        sample_posterior(classifier, x, np.zeros(10, "int64"), likelihood="categorical", jitter=0.0, progress=False)


def test_too_large_model_points_to_vi():
    model = keras.Sequential([keras.Input((400,)), keras.layers.Dense(300)])
    with pytest.raises(ValueError, match="variational"):
        sample_posterior(model, np.zeros((2, 400), "float32"), np.zeros((2, 300), "float32"), progress=False)


def test_functions_compiled_per_call_do_not_read_as_retracing(caplog):
    # Each sample_posterior call compiles closures of the same code, traced once each; TensorFlow
    # warned "triggered tf.function retracing" from the fifth call on.
    import logging

    import tensorflow as tf

    from tfp_uq.inference import _substrate

    substrate = _substrate.get()

    def compiled(offset):
        def start(state):
            return state + offset

        return substrate.compile(start, jit_compile=False)

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        values = [float(compiled(float(k))(tf.constant(1.0))) for k in range(8)]
    assert values == [1.0 + k for k in range(8)]
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
