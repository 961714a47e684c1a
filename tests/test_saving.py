"""Every public layer, prior, head, loss and wrapper survives `.keras` save -> load."""

import json

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import tfp_uq
from tfp_uq import layers, priors

PRIORS = [
    priors.Normal(0.0, 0.5),
    priors.ScaleMixtureNormal(0.5, 1.0, 0.05),
    priors.HierarchicalNormal(granularity="input"),
    priors.DistributionPrior(tfp.distributions.Laplace(0.0, 0.3)),
]

VECTOR_LAYERS = {
    "DenseReparameterization": lambda p: layers.DenseReparameterization(3, prior=p, seed=1),
    "DenseFlipout": lambda p: layers.DenseFlipout(3, prior=p, seed=1),
    "DenseLocalReparameterization": lambda p: layers.DenseLocalReparameterization(3, prior=p, seed=1),
    "MCDropout": lambda p: layers.MCDropout(0.2, seed=1),
    "MCDropoutWrapper": lambda p: layers.MCDropoutWrapper(keras.layers.Dense(3), rate=0.2, seed=1),
    "ConcreteDropout": lambda p: layers.ConcreteDropout(keras.layers.Dense(3), seed=1),
}
IMAGE_LAYERS = {
    "Conv1DReparameterization": ((6, 2), lambda p: layers.Conv1DReparameterization(2, 3, prior=p, seed=1)),
    "Conv1DFlipout": ((6, 2), lambda p: layers.Conv1DFlipout(2, 3, prior=p, seed=1)),
    "Conv2DReparameterization": ((5, 5, 2), lambda p: layers.Conv2DReparameterization(2, 3, prior=p, seed=1)),
    "Conv2DFlipout": ((5, 5, 2), lambda p: layers.Conv2DFlipout(2, 3, prior=p, seed=1)),
    "Conv3DReparameterization": ((4, 4, 4, 1), lambda p: layers.Conv3DReparameterization(2, 2, prior=p, seed=1)),
    "Conv3DFlipout": ((4, 4, 4, 1), lambda p: layers.Conv3DFlipout(2, 2, prior=p, seed=1)),
    "SpatialMCDropout1D": ((6, 2), lambda p: layers.SpatialMCDropout1D(0.3, seed=1)),
    "SpatialMCDropout2D": ((5, 5, 2), lambda p: layers.SpatialMCDropout2D(0.3, seed=1)),
    "SpatialMCDropout3D": ((4, 4, 4, 1), lambda p: layers.SpatialMCDropout3D(0.3, seed=1)),
}


def _round_trip(model, x, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert json.loads(json.dumps(restored.get_config())) == json.loads(json.dumps(model.get_config()))
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    # The random state is saved too: the next calls draw the same numbers. (Eager calls: a `predict` would
    # trace and compile a function per model, ~1.3 s each here, for the same draws.)
    np.testing.assert_array_equal(model(x, training=False), restored(x, training=False))
    return restored


_CASES = [(name, prior) for name in sorted(VECTOR_LAYERS) if name.startswith("Dense") for prior in PRIORS] + [
    (name, None) for name in sorted(VECTOR_LAYERS) if not name.startswith("Dense")
]


@pytest.mark.parametrize(
    "name, prior", _CASES, ids=lambda v: getattr(v, "__name__", type(v).__name__) if not isinstance(v, str) else v
)
def test_vector_layers_round_trip(name, prior, tmp_path):
    model = keras.Sequential([keras.Input((4,)), VECTOR_LAYERS[name](prior), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    _round_trip(model, x, tmp_path)


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
def test_image_layers_round_trip(name, tmp_path):
    shape, build = IMAGE_LAYERS[name]
    model = keras.Sequential(
        [keras.Input(shape), build(priors.HierarchicalNormal(granularity="input")), keras.layers.Flatten()]
    )
    x = np.random.default_rng(0).normal(size=(3,) + shape).astype("float32")
    _round_trip(model, x, tmp_path)


def test_compiled_model_with_head_loss_and_metrics_round_trips(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(2, seed=3, kl_weight=0.01), layers.GaussianHead()])
    model.compile("adam", tfp_uq.losses.GaussianNLL())
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    restored = _round_trip(model, x, tmp_path)
    assert isinstance(restored.loss, tfp_uq.losses.GaussianNLL)


def test_classifier_metrics_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(3, activation="softmax", seed=3, kl_weight=0.01)])
    model.compile(
        "adam",
        "sparse_categorical_crossentropy",
        metrics=[tfp_uq.metrics.ExpectedCalibrationError(num_bins=10), tfp_uq.metrics.BrierScore()],
    )
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    _round_trip(model, x, tmp_path)


def test_bayesianized_model_round_trips(tmp_path):
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    for method in ("flipout", "mc_dropout"):
        _round_trip(tfp_uq.bayesianize(base, method=method, seed=1), x, tmp_path)
