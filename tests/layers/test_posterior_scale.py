import pathlib
import sys

import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq import _parameterization, layers, priors

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "benchmarks"))
import posterior_convergence  # noqa: E402

DATA = pathlib.Path(__file__).parents[1] / "data"
DENSE_LAYERS = [layers.DenseFlipout, layers.DenseReparameterization, layers.DenseLocalReparameterization]


def _fit_one_epoch_at_zero_learning_rate(model, x, y, batch_size):
    """Runs the training calls (which update the input statistics) without moving any weight."""
    model.compile(keras.optimizers.SGD(0.0), posterior_convergence.gaussian_nll, jit_compile=True)
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=False)


def test_running_input_energy_averages_the_first_batches_exactly():
    layer = layers.DenseFlipout(2, kl_weight=0.1, seed=0)
    layer.build((None, 3))
    batches = [np.full((4, 3), value, "float32") * [1.0, 2.0, 0.0] for value in (1.0, 3.0)]
    for batch in batches:
        layer(batch, training=True)
    np.testing.assert_allclose(layer.input_energy.numpy(), np.mean([b[0] ** 2 for b in batches], axis=0), rtol=1e-6)
    layer(np.zeros((4, 3), "float32"), training=False)  # inference leaves the statistics alone
    np.testing.assert_allclose(layer.input_energy.numpy(), [5.0, 20.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("cls", DENSE_LAYERS, ids=lambda c: c.__name__)
def test_curvature_scale_is_prior_plus_n_energy_lambda(cls):
    layer = cls(2, prior=priors.Normal(0.0, 0.5), kl_weight=1 / 250, seed=0)
    layer.build((None, 3))
    layer.input_energy.assign([0.0, 0.2, 3.0])
    raw = np.log(np.array([[0.5, 1.0], [2.0, 4.0], [8.0, 16.0]], "float32"))
    layer._posteriors["kernel"][1].assign(raw)
    expected = 1.0 / np.sqrt(1 / 0.25 + 250 * np.array([[0.0], [0.2], [3.0]]) * np.exp(raw)) + priors.SCALE_FLOOR
    np.testing.assert_allclose(layer.posterior_scale("kernel"), expected, rtol=1e-5)
    # The bias's input is the constant 1; weights of an always-zero input keep the prior's scale.
    np.testing.assert_allclose(layer.posterior_scale("bias"), 1 / np.sqrt(4 + 250 * 100.0) + 1e-6, rtol=1e-5)
    np.testing.assert_allclose(layer.posterior_scale("kernel")[0], 0.5 + 1e-6, rtol=1e-6)


def test_grouped_convolution_reads_the_energy_of_each_group_channels():
    layer = layers.Conv2DFlipout(4, 1, groups=2, kl_weight=1.0, seed=0)
    layer.build((None, 3, 3, 4))
    layer.input_energy.assign([1.0, 2.0, 3.0, 4.0])
    layer._posteriors["kernel"][1].assign(np.zeros((1, 1, 2, 4), "float32"))
    scale = layer.posterior_scale("kernel").numpy()[0, 0]
    # Outputs 0-1 read channels 0-1, outputs 2-3 read channels 2-3 (keras.layers.Conv2D's grouping).
    energy = np.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0]])
    np.testing.assert_allclose(scale, 1 / np.sqrt(1 + energy) + 1e-6, rtol=1e-5)


def test_unit_curvature_is_the_mean_field_optimum_of_bayesian_linear_regression():
    # With lambda = 1 / noise variance the layer's scales are 1 / sqrt(diag(precision)), exactly, for
    # correlated inputs too: the mean-field optimum reads only the precision's diagonal.
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 3)) @ [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 2.0]]).astype("float32")
    y = (x @ [1.0, -1.0, 0.5])[:, None].astype("float32")
    layer = layers.DenseFlipout(1, kl_weight=1 / 256, seed=0)
    model = keras.Sequential([keras.Input((3,)), layer])
    _fit_one_epoch_at_zero_learning_rate(model, x, y, batch_size=256)
    for name in ("kernel", "bias"):
        layer._posteriors[name][1].assign(np.zeros(layer._posteriors[name][1].shape, "float32"))
    _, optimum = posterior_convergence.conjugate_posterior(x, y)
    scales = np.concatenate([np.ravel(layer.posterior_scale("kernel")), np.ravel(layer.posterior_scale("bias"))])
    np.testing.assert_allclose(scales, optimum, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue 19's target, not met yet: std / optimum 0.86-1.37 at N = 3,000 over 3 data seeds "
    "(one-sample gradient noise on the learned curvature; benchmarks/RESULTS.md)",
)
def test_conjugate_regression_at_the_user_budget_is_near_the_mean_field_optimum():
    # N = 3,000: 20 epochs of batch 32, Adam 3e-2 cosine-decayed to 0 (benchmarks/posterior_convergence.py).
    std_ratio, mean_error = posterior_convergence.fit_conjugate(layers.DenseFlipout, 3000, seed=0)
    assert np.all(np.abs(std_ratio - 1.0) < 0.2), std_ratio
    assert np.all(np.abs(mean_error) < 0.5), mean_error


def test_quickstart_fit_moves_the_posterior_and_always_zero_pixels_keep_the_prior():
    x_train, y_train, *_ = posterior_convergence.digits()
    # 1,152 of the 1,212 images: 18 full batches of 64, so the XLA step compiles once, not twice.
    x_train, y_train = x_train[:1152], y_train[:1152]
    model = posterior_convergence.build("flipout", len(x_train))
    first = model.layers[0]
    start = first.posterior_scale("kernel").numpy()
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    scale = first.posterior_scale("kernel").numpy()
    always_zero = np.all(x_train == 0, axis=0)
    assert always_zero.sum() >= 2
    np.testing.assert_allclose(scale[always_zero], 1.0, atol=1e-5)  # the prior N(0, 1)
    used = scale[~always_zero]
    assert np.median(np.abs(np.log(used / start[~always_zero]))) > 0.5  # left the start
    assert np.percentile(used, 90) / np.percentile(used, 10) > 10  # and differ across weights


def test_posterior_std_in_history_is_the_mean_posterior_scale():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), layers.DenseFlipout(8, activation="relu", seed=1), layers.DenseLocalReparameterization(1)]
    )
    tfp_uq.set_kl_weight(model, num_examples=64)
    model.compile("adam", "mse")  # XLA: tests/layers/test_dense.py's XLA fits check the same entry
    history = model.fit(x, x[:, :1], epochs=2, batch_size=16, verbose=0)
    scales = np.concatenate([np.ravel(l.posterior_scale(n)) for l in model.layers for n in l._posteriors])
    np.testing.assert_allclose(history.history["posterior_std"][-1], scales.mean(), rtol=1e-5)


def test_keras_file_saved_before_the_curvature_scale_loads_and_predicts_the_same():
    (path,) = DATA.glob("bayesian_mlp_*.keras")
    saved = np.load(path.with_suffix(".npz"))
    model = keras.saving.load_model(path)
    for layer in tfp_uq.bayesian_layers(model):
        assert not layer.uses_curvature_scale
        for name in ("kernel", "bias"):
            np.testing.assert_allclose(layer.posterior_scale(name), saved[f"scale:{layer.name}/{name}"], rtol=1e-6)
    tfp_uq.set_deterministic(model)
    np.testing.assert_allclose(model.predict(saved["x"], verbose=0), saved["mean_outputs"], rtol=1e-5)


@pytest.mark.parametrize("value", [0.0, -1e-3, float("inf"), float("nan")])
@pytest.mark.parametrize("cls", DENSE_LAYERS + [layers.Conv2DFlipout], ids=lambda c: c.__name__)
def test_bad_scale_start_raises_an_error_naming_it(cls, value):
    args = (2, 3) if cls is layers.Conv2DFlipout else (2,)
    with pytest.raises(ValueError, match="posterior_scale_init"):
        cls(*args, posterior_scale_init=value)


def test_explicit_scale_start_keeps_the_softplus_scale():
    layer = layers.DenseFlipout(2, posterior_scale_init=0.05, seed=0)
    layer.build((None, 3))
    assert not layer.uses_curvature_scale and not hasattr(layer, "input_energy")
    np.testing.assert_allclose(layer.posterior_scale("kernel"), 0.05, rtol=1e-5)


def test_kl_weight_zero_gives_the_floor_not_a_nan():
    raw = keras.ops.zeros((2,))
    scale = _parameterization.curvature_scale(raw, 1.0, 0.0, 1.0)
    assert np.all(np.isfinite(scale)) and np.all(np.asarray(scale) < 1e-5)
