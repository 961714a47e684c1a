"""Bayesian layers under dtype policies: mixed precision keeps float32 variables
and KL; float64 layers compute, store and predict in float64."""

import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq import layers

X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
LABELS = (X[:, 0] > 0).astype("int64")


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


# Each case compiles its own XLA training step (~10-20 s): make test runs Flipout under both policies,
# make test-all the other two estimators too.
@pytest.mark.parametrize(
    "cls",
    [
        layers.DenseFlipout,
        pytest.param(layers.DenseReparameterization, marks=pytest.mark.slow),
        pytest.param(layers.DenseLocalReparameterization, marks=pytest.mark.slow),
    ],
    ids=lambda c: c.__name__,
)
def test_dense_layers_train_with_float32_state(policy, cls):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            cls(8, activation="relu", seed=1),
            layers.MCDropout(0.1, seed=2),
            cls(2, seed=3),
            keras.layers.Activation("softmax", dtype="float32"),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    # XLA under bfloat16 (the CPU's half type), the traced step (tfp_uq's C++ kernels, where built) under
    # float16: both paths see a half compute type, and only one XLA step compiles (~10 s of a test here).
    jit_compile = policy == "mixed_bfloat16"
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", jit_compile=jit_compile)
    history = model.fit(X, LABELS, epochs=8, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    first = model.layers[0]
    assert first.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in first.weights)
    assert str(model.losses[0].dtype) in ("float32", "<dtype: 'float32'>")
    assert np.isfinite(first.kl_divergence().numpy()) and first.kl_divergence().dtype == "float32"
    result = tfp_uq.predict(model, X, num_samples=8, seed=0)
    np.testing.assert_allclose(result.probs.sum(-1), 1.0, rtol=1e-3)


def test_conv_and_lora_layers_run(policy):
    conv = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2DFlipout(3, 3, seed=1),
            keras.layers.Flatten(),
            keras.layers.Dense(2, dtype="float32"),
        ]
    )
    tfp_uq.set_kl_weight(conv, num_examples=16)
    conv.compile("adam", "mse")
    images = np.random.default_rng(1).normal(size=(16, 6, 6, 2)).astype("float32")
    assert np.isfinite(conv.fit(images, np.zeros((16, 2)), epochs=1, verbose=0).history["loss"][0])
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(2, dtype="float32")])
    lora = tfp_uq.bayesianize(base, method="lora", lora_rank=2, num_examples=64, layer_filter=lambda l: l.units == 4)
    lora.compile("adam", "mse")
    assert np.isfinite(lora.fit(X, X[:, :2], epochs=1, verbose=0).history["loss"][0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: layers.DenseFlipout(3, dtype="float64"),
        pytest.param(lambda: layers.DenseReparameterization(3, dtype="float64"), marks=pytest.mark.slow),
        pytest.param(lambda: layers.DenseLocalReparameterization(3, dtype="float64"), marks=pytest.mark.slow),
        lambda: layers.ConcreteDropout(layers.DenseFlipout(3, dtype="float64"), dtype="float64"),
    ],
    ids=["flipout", "reparameterization", "local_reparameterization", "concrete_dropout"],
)
def test_float64_layers_train_in_float64(make):
    # Keras sums add_loss terms in float32: a float64 KL term must not break fit
    # (it does for keras Dense(dtype="float64") with a kernel_regularizer).
    model = keras.Sequential([keras.Input((4,), dtype="float64"), make()])
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    model.compile("adam", "mse", jit_compile=True)
    x = X.astype("float64")
    history = model.fit(x, x[:, :3], epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and np.isfinite(history["kl_loss"][-1])
    assert all(v.dtype == "float64" for v in model.layers[0].trainable_weights)
    assert model.predict(x[:2], verbose=0).dtype == "float64"
    assert tfp_uq.predict(model, x[:5], num_samples=4, seed=0).mean.shape == (5, 3)
