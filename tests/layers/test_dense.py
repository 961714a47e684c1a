import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import priors
from tfp_uq.layers import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)

DENSE_LAYERS = [DenseReparameterization, DenseFlipout, DenseLocalReparameterization]
X = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 1.0]], dtype="float32")


def _randomised_layer(cls, **kwargs):
    layer = cls(3, posterior_scale_init=0.3, kl_weight=0.0, seed=7, **kwargs)
    layer.build((None, 4))
    rng = np.random.default_rng(0)
    for variable in layer.trainable_weights:
        variable.assign(variable + rng.normal(0.0, 0.2, variable.shape).astype("float32"))
    return layer


def _monte_carlo_moments(layer, x, num_calls=1500, copies=32):
    tiled = tf.constant(np.repeat(x, copies, axis=0))

    @tf.function
    def moments():
        total = tf.zeros((len(tiled), layer.units))
        total_sq = tf.zeros((len(tiled), layer.units))
        for _ in tf.range(num_calls):
            y = layer(tiled)
            total += y
            total_sq += y * y
        return total, total_sq

    total, total_sq = (t.numpy().reshape(len(x), copies, -1) for t in moments())
    count = num_calls * copies
    mean = total.sum(1) / count
    return mean, total_sq.sum(1) / count - mean**2


@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
def test_linear_layer_predictive_moments_match_closed_form(cls):
    layer = _randomised_layer(cls)
    loc, bias = layer.kernel.numpy(), layer.bias.numpy()
    scale = layer.posterior_scale("kernel").numpy()
    bias_scale = layer.posterior_scale("bias").numpy()
    exact_mean = X @ loc + bias
    exact_var = (X**2) @ scale**2 + bias_scale**2
    mean, var = _monte_carlo_moments(layer, X)
    # With one weight draw per call (reparameterization) there are only
    # num_calls independent samples; allow 5 standard errors.
    np.testing.assert_allclose(mean, exact_mean, atol=5 * np.sqrt(exact_var.max() / 1500))
    np.testing.assert_allclose(var, exact_var, rtol=0.15)


@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
def test_deterministic_layer_outputs_posterior_mean(cls):
    layer = _randomised_layer(cls, deterministic=True)
    np.testing.assert_allclose(layer(X), X @ layer.kernel.numpy() + layer.bias.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("input_shape", [(None, 4), (None, 3, 4)], ids=["rank2", "rank3"])
def test_sampled_outputs_keep_their_static_shape_in_graphs(cls, input_shape):
    # A single-unit output (binary classifier, regression) must stay (None, 1):
    # Keras losses and metrics read the static shape.
    layer = cls(1, kl_weight=0.1)
    layer.build(input_shape)
    traced = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec(input_shape))
    assert tuple(traced.structured_outputs.shape) == layer.compute_output_shape(input_shape) == input_shape[:-1] + (1,)


def test_point_estimate_bias_is_an_ordinary_weight():
    layer = DenseFlipout(3, bayesian_bias=False, kl_weight=0.0)
    layer.build((None, 4))
    names = sorted(v.path.split("/")[-1] for v in layer.trainable_weights)
    assert names == ["bias", "kernel", "kernel_rho"]


@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
def test_layer_adds_weighted_kl_as_its_loss(cls):
    layer = _randomised_layer(cls)
    layer.kl_weight = 0.01
    layer(X)
    prior = priors.Normal()
    expected = sum(
        prior.kl_divergence(layer.posterior_loc(n), layer.posterior_scale(n), None) for n in ("kernel", "bias")
    )
    np.testing.assert_allclose(layer.losses[0], 0.01 * expected, rtol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_shared_layer_counts_its_kl_once_per_model_call(jit_compile):
    # A siamese model calls one layer on two inputs: its weights have one
    # posterior, so the ELBO has one KL term (as Keras has one L2 term for a
    # shared Dense with a kernel_regularizer).
    shared = DenseReparameterization(2, seed=3)
    first, second = keras.Input((X.shape[1],)), keras.Input((X.shape[1],))
    model = keras.Model([first, second], keras.layers.Add()([shared(first), shared(second)]))
    tfp_uq.set_kl_weight(model, 0.5)
    model([X, X])
    assert len(model.losses) == 1
    np.testing.assert_allclose(model.losses[0], 0.5 * shared.kl_divergence(), rtol=1e-6)
    # Learning rate 0: the weights stay, while the step collects the input statistics of the
    # curvature scale (the same X in both calls), so the KL after fit is the step's.
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    y = np.zeros((len(X), 2), "float32")
    logs = model.fit([X, X], y, batch_size=len(X), epochs=1, verbose=0).history
    np.testing.assert_allclose(logs["kl_loss"][0], 0.5 * float(shared.kl_divergence()), rtol=1e-5)


def test_same_seed_gives_same_outputs_and_calls_differ():
    a, b = (DenseFlipout(5, seed=3, kernel_initializer="ones", posterior_scale_init=0.5) for _ in range(2))
    first_a, first_b = a(X), b(X)
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.allclose(first_a, a(X))


def test_unset_kl_weight_warns_once_and_set_kl_weight_silences_it():
    def model():
        return keras.Sequential([keras.Input((4,)), DenseFlipout(2), DenseFlipout(1)])

    unset = model()
    unset.compile("adam", "mse")
    with pytest.warns(UserWarning, match="kl_weight is not set"):
        unset.fit(X, X[:, :1], epochs=1, verbose=0)

    ready = model()
    assert tfp_uq.set_kl_weight(ready, num_examples=200) == pytest.approx(0.005)
    assert [l.kl_weight_variable.numpy() for l in tfp_uq.bayesian_layers(ready)] == [0.005, 0.005]
    ready.compile("adam", "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ready.fit(X, X[:, :1], epochs=1, verbose=0)


def test_set_deterministic_switches_a_compiled_model():
    model = keras.Sequential([keras.Input((4,)), DenseFlipout(3, posterior_scale_init=0.5, kl_weight=0.0)])
    assert not np.allclose(model.predict(X, verbose=0), model.predict(X, verbose=0))
    tfp_uq.set_deterministic(model)
    np.testing.assert_array_equal(model.predict(X, verbose=0), model.predict(X, verbose=0))
    tfp_uq.set_deterministic(model, False)
    assert not np.allclose(model.predict(X, verbose=0), model.predict(X, verbose=0))


def _model_kinds():
    def sequential():
        return keras.Sequential([keras.Input((4,)), DenseFlipout(8, activation="relu"), keras.layers.Dense(1)])

    def functional():
        inputs = keras.Input((4,))
        hidden = DenseReparameterization(8, activation="relu")(inputs)
        hidden = keras.layers.Dropout(0.1)(hidden)
        return keras.Model(inputs, DenseLocalReparameterization(1)(hidden))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = DenseFlipout(8, activation="relu")
            self.out = DenseReparameterization(1)

        def call(self, x):
            return self.out(self.hidden(x))

    return {"sequential": sequential, "functional": functional, "subclassed": Subclassed}


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_models_of_every_kind_train_under_xla(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]])).astype("float32")
    model = _model_kinds()[kind]()
    model(x[:2])
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    model.compile(keras.optimizers.Adam(0.02), "mse", jit_compile=True)
    history = model.fit(x, y, epochs=30, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.2 * history[0]
    assert len(model.losses) == len(tfp_uq.bayesian_layers(model))
    # The posterior_std entry (tfp_uq.layers's metric) is the mean posterior scale, under XLA too.
    scales = [np.ravel(l.posterior_scale(n)) for l in tfp_uq.bayesian_layers(model) for n in l._posteriors]
    np.testing.assert_allclose(model.history.history["posterior_std"][-1], np.concatenate(scales).mean(), rtol=1e-5)


def _as_json(config):
    # Keras writes tuples that load back as lists.
    return json.loads(json.dumps(config))


# ~15 s a class (an XLA fit, save, load, predict); every class's .keras round trip (with each prior) also
# runs in tests/test_saving.py, so make test runs this one for Flipout, make test-all for all three.
@pytest.mark.parametrize(
    "cls",
    [pytest.param(cls, marks=[] if cls is DenseFlipout else pytest.mark.slow) for cls in DENSE_LAYERS],
    ids=lambda c: c.__name__,
)
def test_save_and_load_round_trip(cls, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            cls(6, activation="tanh", prior=priors.ScaleMixtureNormal(0.3, 1.0, 0.1), kl_weight=0.01, seed=11),
            cls(2, prior=priors.HierarchicalNormal(granularity="input"), kl_weight=0.01, seed=12),
        ]
    )
    model.compile("adam", "mse")
    model.fit(X, X[:, :2], epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert _as_json(restored.get_config()) == _as_json(model.get_config())
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    # Eager calls draw what a first `predict` would, without tracing a function per model.
    np.testing.assert_array_equal(model(X, training=False), restored(X, training=False))
    assert isinstance(restored.layers[1].prior, priors.HierarchicalNormal)


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"units": 0}, ValueError, "units"),
        ({"units": -3}, ValueError, "units"),
        ({"units": 2.5}, TypeError, "units"),
        ({"units": 2, "posterior_scale_init": 0.0}, ValueError, "posterior_scale_init"),
        ({"units": 2, "kl_weight": -1.0}, ValueError, "kl_weight"),
        ({"units": 2, "prior": "gaussian"}, TypeError, "prior"),
        ({"units": 2, "prior": keras.initializers.Zeros()}, TypeError, "prior"),
        ({"units": 2, "seed": "abc"}, TypeError, "seed"),
    ],
)
@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
def test_bad_arguments_raise_errors_naming_them(cls, kwargs, error, argument):
    with pytest.raises(error, match=argument):
        cls(**kwargs)


@pytest.mark.parametrize(
    "option, value, hint",
    [
        ("kernel_regularizer", "l2", "prior"),
        ("bias_regularizer", "l2", "prior"),
        ("kernel_constraint", "max_norm", "constraint"),
        ("bias_constraint", "non_neg", "constraint"),
        ("lora_rank", 4, "BayesianLoRA"),
    ],
)
def test_dense_options_a_bayesian_layer_replaces_raise_and_say_why(option, value, hint):
    with pytest.raises(ValueError, match=f"{option}.*{hint}"):
        DenseFlipout(2, **{option: value})
    with pytest.raises(ValueError, match=option):
        tfp_uq.layers.Conv2DReparameterization(2, 3, **{option: value})
    DenseFlipout(2, **{option: None})  # the Keras default, as in a Dense config, is fine


@pytest.mark.parametrize("shape", [(None,), (None, 3, None)])
def test_bad_input_shape_raises_value_error(shape):
    with pytest.raises(ValueError, match="rank >= 2|last input dimension"):
        DenseFlipout(2).build(shape)


def test_set_kl_weight_rejects_bad_arguments():
    model = keras.Sequential([keras.Input((4,)), DenseFlipout(2)])
    with pytest.raises(ValueError, match="exactly one"):
        tfp_uq.set_kl_weight(model)
    with pytest.raises(ValueError, match="num_examples"):
        tfp_uq.set_kl_weight(model, num_examples=0)
    with pytest.raises(ValueError, match="kl_weight"):
        tfp_uq.set_kl_weight(model, kl_weight=-0.5)
    with pytest.raises(ValueError, match="no tfp_uq Bayesian layers"):
        tfp_uq.set_kl_weight(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), 0.1)
