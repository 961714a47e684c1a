"""Checks of `tfp_uq._native`: the compiled kernels against the XLA-compiled draws.

`make test` builds the kernels first; where they cannot be built (no C++
compiler) the kernel tests skip and the layers use the XLA-compiled draws,
which the rest of the suite tests.
"""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import _native, _parameterization, _random, layers, priors
from tfp_uq.cli import main

SEED = tf.constant([12345, -678], "int64")


@pytest.fixture(scope="module")
def kernels():
    lib = _native.library()
    if lib is None:
        pytest.skip("tfp_uq's C++ kernels are not built (run `tfp-uq build-native`)")
    return lib


def _xla_draw(draw, shape, seed):
    return tf.function(draw, jit_compile=True, autograph=False)(shape, seed)


def _op_types(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("shape", [(128, 784), (7, 1, 1, 33), (5,)])
def test_random_kernel_draws_the_numbers_of_the_xla_draw(kernels, shape):
    seed = _random.substream(SEED, 10)
    size = tf.constant(shape, "int32")
    signs = kernels.tfp_uq_random(size, seed, distribution="rademacher")
    np.testing.assert_array_equal(signs, _xla_draw(_random._rademacher, size, seed))
    normals = kernels.tfp_uq_random(size, seed, distribution="normal").numpy()
    expected = _xla_draw(_random._normal, size, seed).numpy()
    # Same bits and the same inverse-CDF polynomial; only float rounding differs.
    np.testing.assert_allclose(normals, expected, rtol=1e-5, atol=1e-6)
    assert normals.shape == shape


# Curvature energies: one per row (a Dense kernel's layout), zeros (inputs never seen) included,
# or one per element (a grouped convolution's [rows, columns] layout).
ENERGIES = {
    "softplus": None,
    "curvature, per row": np.where(np.arange(40) % 7 == 0, 0.0, np.linspace(0.01, 30.0, 40))[:, None],
    "curvature, per element": np.random.default_rng(2).uniform(0.0, 5.0, size=(40, 70)),
}


@pytest.mark.parametrize("energy", ENERGIES.values(), ids=ENERGIES.keys())
@pytest.mark.parametrize("output", ["sample", "perturbation", "scale"])
def test_posterior_kernel_value_kl_and_gradients_match_the_formulas(kernels, output, energy):
    rng = np.random.default_rng(0)
    loc = tf.constant(rng.normal(size=(40, 70)).astype("float32") * 0.3)
    # Scales from tiny to huge: softplus and its derivative over their range.
    rho = tf.constant(np.concatenate([rng.normal(size=(39, 70)) * 3 - 4, np.linspace(-30, 30, 70)[None]]), "float32")
    upstream = tf.constant(rng.normal(size=(40, 70)).astype("float32"))
    prior = priors.Normal(0.3, 0.5)
    kl_weight = tf.constant(1 / 300, "float32")
    scale_inputs = None if energy is None else ({"w": tf.constant(energy, "float32")}, kl_weight)

    def objective(native):
        with tf.GradientTape() as tape:
            tape.watch([loc, rho])
            if native:
                drawn, kl = _native.posterior_draws(
                    {"w": (loc, rho, {})}, SEED, output, prior, training=True, scale_inputs=scale_inputs
                )
                value = drawn["w"]
            else:
                if energy is None:
                    scale = priors.positive_scale(rho)
                else:
                    scale = _parameterization.curvature_scale(rho, scale_inputs[0]["w"], kl_weight, prior.scale**2)
                eps = _random.normal(loc.shape, _random.substream(SEED, 0))
                value = {"sample": loc + scale * eps, "perturbation": scale * eps, "scale": scale}[output]
                kl = tf.reduce_sum(tfp_uq.priors.normal_kl(loc, scale, prior.loc, prior.scale))
            total = tf.reduce_sum(value * upstream) + 0.7 * kl
        return [value, kl] + tape.gradient(total, [loc, rho])

    value, kl, grad_loc, grad_rho = objective(native=True)
    ref_value, ref_kl, ref_grad_loc, ref_grad_rho = objective(native=False)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kl, ref_kl, rtol=1e-5)
    np.testing.assert_allclose(grad_loc, ref_grad_loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_rho, ref_grad_rho, rtol=1e-3, atol=1e-5)


def test_posterior_kernel_keeps_nan_scales_nan(kernels):
    rho = tf.constant([[0.0, np.nan], [1.0, -2.0]])
    drawn, kl = _native.posterior_draws({"w": (tf.zeros([2, 2]), rho, {})}, SEED, "scale", priors.Normal(), True)
    assert np.isnan(drawn["w"][0, 1]) and np.isnan(kl)
    assert np.isfinite(drawn["w"].numpy()[[0, 1, 1], [0, 0, 1]]).all()


def _flipout_model():
    return keras.Sequential([keras.Input((6,)), layers.DenseFlipout(4, seed=1, kl_weight=0.1)])


def test_kernels_are_used_only_in_training_calls_outside_xla(kernels):
    model = _flipout_model()
    spec = tf.TensorSpec([None, 6], "float32")
    assert {"TfpUqNormalPosterior", "TfpUqRandom"} <= _op_types(lambda x: model(x, training=True), spec)
    for fn in (lambda x: model(x, training=False), lambda x: model(x)):
        assert not any(t.startswith("TfpUq") for t in _op_types(fn, spec))
    compiled = tf.function(lambda x: model(x, training=True), jit_compile=True)
    graph = compiled.get_concrete_function(spec).graph
    assert not any(op.type.startswith("TfpUq") for op in graph.get_operations())
    assert compiled(tf.ones([3, 6])).shape == (3, 4)


def test_kernels_skip_other_priors_and_dtypes(kernels):
    spec = tf.TensorSpec([None, 6], "float32")
    for layer in (
        layers.DenseReparameterization(4, prior=priors.ScaleMixtureNormal(0.5, 1.0, 0.1), kl_weight=0.1),
        layers.DenseReparameterization(4, dtype="float64", kl_weight=0.1),
    ):
        model = keras.Sequential([keras.Input((6,)), layer])
        assert "TfpUqNormalPosterior" not in _op_types(lambda x: model(x, training=True), spec)


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: layers.DenseReparameterization(5, seed=3, posterior_scale_init=0.05),
        lambda: layers.DenseFlipout(5, seed=3, posterior_scale_init=0.05, prior=priors.Normal(0.1, 0.5)),
        lambda: layers.DenseLocalReparameterization(5, seed=3, posterior_scale_init=0.05),
        lambda: layers.DenseReparameterization(5, seed=3),
        lambda: layers.DenseFlipout(5, seed=3, prior=priors.Normal(0.1, 0.5)),
        lambda: layers.DenseLocalReparameterization(5, seed=3),
    ],
    ids=[
        "reparameterization",
        "flipout",
        "local",
        "curvature-reparameterization",
        "curvature-flipout",
        "curvature-local",
    ],
)
def test_fit_with_kernels_equals_fit_with_the_xla_draw(kernels, make_layer, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, :5] @ rng.normal(size=(5, 5)) + 0.1 * rng.normal(size=(64, 5))).astype("float32")

    def fit(native):
        monkeypatch.setenv(_native.ENVIRONMENT_SWITCH, "1" if native else "0")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), make_layer()])
        tfp_uq.set_kl_weight(model, num_examples=len(x))
        initial = [w.numpy() for w in model.trainable_weights]
        # Plain SGD: its steps are proportional to the gradients (Adam's are not).
        model.compile(keras.optimizers.SGD(0.05), "mse")
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
        return history, [w.numpy() - w0 for w, w0 in zip(model.trainable_weights, initial)]

    loss, steps = fit(native=True)
    ref_loss, ref_steps = fit(native=False)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    for got, expected in zip(steps, ref_steps):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_model_trained_with_kernels_exports_without_them(kernels, tmp_path):
    model = _flipout_model()
    model.compile("adam", "mse")
    model.fit(np.ones((8, 6), "float32"), np.ones((8, 4), "float32"), epochs=1, verbose=0)
    path = tfp_uq.export(model, tmp_path / "export", num_samples=5, task="regression")
    assert b"TfpUq" not in (pathlib.Path(path) / "saved_model.pb").read_bytes()
    model.export(str(tmp_path / "keras_export"), verbose=False)
    assert b"TfpUq" not in (tmp_path / "keras_export" / "saved_model.pb").read_bytes()


def test_second_order_gradients_say_how_to_get_them(kernels, monkeypatch):
    def gradient_norm_gradient():
        layer = layers.DenseReparameterization(3, seed=1, kl_weight=0.1)
        x = tf.ones([2, 4])
        layer(x)

        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = tf.reduce_sum(layer(x, training=True) ** 2) + tf.add_n(layer.losses)
                norm = tf.add_n([tf.reduce_sum(g**2) for g in inner.gradient(loss, layer.trainable_weights)])
            return outer.gradient(norm, layer.trainable_weights)

        return step()

    with pytest.raises(LookupError, match=_native.ENVIRONMENT_SWITCH):
        gradient_norm_gradient()
    monkeypatch.setenv(_native.ENVIRONMENT_SWITCH, "0")
    assert all(np.isfinite(g).all() for g in gradient_norm_gradient())


def test_environment_switch_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv(_native.ENVIRONMENT_SWITCH, "0")
    assert _native.library() is None
    assert _native.random("normal", tf.constant([3]), SEED, training=True) is None


def test_build_names_a_missing_compiler(capsys):
    with pytest.raises(RuntimeError, match="no-such-compiler"):
        _native.build(compiler="no-such-compiler")
    assert main(["build-native", "--compiler", "no-such-compiler"]) == 1
    assert "no-such-compiler" in capsys.readouterr().err
