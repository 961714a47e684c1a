"""tfp_uq.laplace.fit: the exact Gaussian posterior of linear regression, and its argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model, log_evidence, ridge_posterior

from tfp_uq import laplace

PRIOR, NOISE = 2.0, 0.5


@pytest.fixture(scope="module")
def exact(regression_data):
    x, y = regression_data
    mean, covariance = ridge_posterior(x, y, PRIOR, NOISE)
    model = linear_model(mean)
    posterior = laplace.fit(
        model,
        (x, y),
        subset="all",
        hessian="full",
        prior_precision=PRIOR,
        noise_scale=NOISE,
        batch_size=64,
        verbose=0,
        jit_compile=True,
    )
    return posterior, mean, covariance


def test_full_laplace_of_linear_regression_is_the_exact_gaussian_posterior(exact):
    posterior, mean, covariance = exact
    # The mean is the trained weights (here set to the exact posterior mean, in float32).
    np.testing.assert_allclose(posterior.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(posterior.covariance(), covariance, rtol=1e-5, atol=1e-5 * np.abs(covariance).max())


def test_laplace_evidence_of_linear_regression_is_the_closed_form_evidence(exact, regression_data):
    posterior, _, _ = exact
    expected = log_evidence(*regression_data, PRIOR, NOISE)
    assert posterior.log_marginal_likelihood() == pytest.approx(expected, rel=1e-6)
    # At another prior precision theta* is no longer the MAP, and the Laplace evidence lies below the exact one.
    assert posterior.log_marginal_likelihood(prior_precision=20.0) < log_evidence(*regression_data, 20.0, NOISE)


def test_fit_reports_the_given_prior_precision_and_noise(exact):
    posterior, _, _ = exact
    assert posterior.prior_precision == PRIOR
    assert posterior.noise_scale == pytest.approx(NOISE)
    assert posterior.layer_names == [posterior.model.layers[0].name]


def test_datasets_give_the_same_posterior_as_arrays(exact, regression_data):
    posterior, _, _ = exact
    x, y = regression_data
    kwargs = {"subset": "all", "hessian": "full", "prior_precision": PRIOR, "noise_scale": NOISE, "verbose": 0}
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    from_dataset = laplace.fit(posterior.model, dataset, **kwargs)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return x[index * 50 : (index + 1) * 50], y[index * 50 : (index + 1) * 50]

    from_py_dataset = laplace.fit(posterior.model, Batches(), **kwargs)
    for other in (from_dataset, from_py_dataset):
        np.testing.assert_allclose(other.covariance(), posterior.covariance(), rtol=1e-10)
        assert other.log_marginal_likelihood() == pytest.approx(posterior.log_marginal_likelihood(), rel=1e-8)


# Bad input: each a clear error naming the argument.


@pytest.fixture(scope="module")
def classifier():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _data(n=20):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.integers(0, 2, size=n)


def test_a_model_without_supported_layers_is_refused(classifier):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Rescaling(2.0), keras.layers.Softmax()])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="subset='last_layer'.*no Dense"):
        laplace.fit(model, _data(), verbose=0)


def test_an_unknown_or_unsupported_layer_name_is_refused(classifier):
    with pytest.raises(ValueError, match="subset names 'nope'.*not a layer"):
        laplace.fit(classifier, _data(), subset=["nope"], verbose=0)
    with pytest.raises(ValueError, match="subset must name at least one layer"):
        laplace.fit(classifier, _data(), subset=[], verbose=0)
    with pytest.raises(TypeError, match="subset must be"):
        laplace.fit(classifier, _data(), subset=3, verbose=0)
    with pytest.raises(ValueError, match="subset must be one of"):
        laplace.fit(classifier, _data(), subset="first_layer", verbose=0)


def test_unbatched_or_empty_data_is_refused(classifier):
    x, y = _data()
    with pytest.raises(ValueError, match="data is a tf.data.Dataset of unbatched elements"):
        laplace.fit(classifier, tf.data.Dataset.from_tensor_slices((x, y)), verbose=0)
    with pytest.raises(ValueError, match="data is an empty tf.data.Dataset"):
        laplace.fit(classifier, tf.data.Dataset.from_tensor_slices((x, y)).batch(4).take(0), verbose=0)
    with pytest.raises(ValueError, match="data is empty"):
        laplace.fit(classifier, (x[:0], y[:0]), verbose=0)
    with pytest.raises(ValueError, match="data has x and y of different lengths"):
        laplace.fit(classifier, (x, y[:5]), verbose=0)
    with pytest.raises(TypeError, match="data must be a tuple"):
        laplace.fit(classifier, x, verbose=0)
    with pytest.raises(ValueError, match="data is a tf.data.Dataset without targets"):
        laplace.fit(classifier, tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)


def test_a_non_positive_prior_precision_is_refused(classifier):
    for value in (0.0, -1.0):
        with pytest.raises(ValueError, match="prior_precision must be > 0"):
            laplace.fit(classifier, _data(), prior_precision=value, verbose=0)
    with pytest.raises(ValueError, match="prior_precision must be 'marglik', 'gridsearch' or a positive float"):
        laplace.fit(classifier, _data(), prior_precision="grid", verbose=0)
    with pytest.raises(ValueError, match="noise_scale must be > 0"):
        laplace.fit(classifier, _data(), likelihood="classification", noise_scale=0.0, verbose=0)


def test_a_likelihood_that_does_not_match_the_loss_is_refused(classifier, regression_data):
    with pytest.raises(ValueError, match="likelihood='regression' does not match the model's compiled loss"):
        laplace.fit(classifier, _data(), likelihood="regression", verbose=0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        laplace.fit(classifier, _data(), likelihood="poisson", verbose=0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("adam", "mae")
    with pytest.raises(ValueError, match="likelihood='auto' reads the model's compiled loss"):
        laplace.fit(model, regression_data, verbose=0)


def test_other_bad_arguments_name_themselves(classifier):
    with pytest.raises(ValueError, match="hessian must be one of"):
        laplace.fit(classifier, _data(), hessian="lowrank", verbose=0)
    with pytest.raises(ValueError, match="predictive must be one of"):
        laplace.fit(classifier, _data(), predictive="gp", verbose=0)
    with pytest.raises(ValueError, match="prior_structure='diag' needs hessian='diag' or 'full'"):
        laplace.fit(classifier, _data(), prior_structure="diag", verbose=0)
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        laplace.fit("model", _data(), verbose=0)


def test_full_refuses_more_parameters_than_its_limit_and_points_to_kron():
    model = keras.Sequential(
        [keras.Input((80,)), keras.layers.Dense(80, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.zeros((4, 80), "float32")
    with pytest.raises(
        ValueError, match=r"hessian='full' covers 6642 parameters, more than FULL_MAX_PARAMETERS = 5000.*'kron'"
    ):
        laplace.fit(model, (x, np.zeros(4)), subset="all", hessian="full", verbose=0)


def test_kron_on_a_subclassed_model_points_to_diag():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(4, activation="relu")
            self.out = keras.layers.Dense(2, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(x))

    model = Net()
    model.compile("adam", "sparse_categorical_crossentropy")
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="hessian='kron' needs each covered layer's inputs.*use hessian='diag'"):
        laplace.fit(model, _data(), verbose=0)


def test_a_reloaded_model_gives_the_same_posterior(tmp_path):
    # Loading calls a Sequential model's layers several times; the posterior must read the graph the model runs.
    x, y = _data(60)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2, activation="softmax")]
    )
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for each in (model, loaded):
        each.compile("adam", "sparse_categorical_crossentropy")
    kwargs = {"subset": "all", "prior_precision": 1.0, "verbose": 0}
    np.testing.assert_allclose(
        laplace.fit(loaded, (x, y), **kwargs).covariance(), laplace.fit(model, (x, y), **kwargs).covariance(), rtol=1e-6
    )
