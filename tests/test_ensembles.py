import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq.ensembles import DeepEnsemble

X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
Y = (X[:, :1] - X[:, 1:2]).astype("float32")


def _member(seed):
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2), tfp_uq.GaussianHead()]
    )


@pytest.fixture(scope="module")
def ensemble():
    model = DeepEnsemble(_member, num_members=4, seed=0)
    model.compile(keras.optimizers.Adam(0.01), tfp_uq.losses.GaussianNLL(), jit_compile=True)
    model.fit(X, Y, epochs=20, verbose=0)
    return model


def test_members_differ_and_all_train(ensemble):
    outputs = ensemble.predict(X, verbose=0)
    assert outputs.shape == (64, 4, 2)
    assert not np.allclose(outputs[:, 0], outputs[:, 1])
    for member in ensemble.members:
        np.testing.assert_array_less(np.mean((member.predict(X, verbose=0)[:, :1] - Y) ** 2), np.mean(Y**2))


def test_predictive_variance_is_between_member_variance(ensemble):
    result = tfp_uq.predict(ensemble, X, return_samples=True)
    locs, scales = result.samples[..., :1], result.samples[..., 1:]
    assert result.samples.shape[0] == 4
    np.testing.assert_allclose(result.mean, locs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(result.epistemic_variance, locs.var(0), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(result.aleatoric_variance, (scales**2).mean(0), rtol=1e-6)


def test_ensemble_saves_loads_and_exports(ensemble, tmp_path):
    ensemble.save(tmp_path / "ensemble.keras")
    restored = keras.models.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(restored.predict(X, verbose=0), ensemble.predict(X, verbose=0), rtol=1e-6)
    import tensorflow as tf

    path = tfp_uq.export(ensemble, tmp_path / "export", task="regression")
    served = tf.saved_model.load(path)
    outputs = served.serve(tf.constant(X))
    np.testing.assert_allclose(
        outputs["epistemic_std"].numpy() ** 2, tfp_uq.predict(ensemble, X).epistemic_variance, rtol=1e-4, atol=1e-8
    )


def test_bad_ensembles_raise():
    with pytest.raises(ValueError, match="num_members"):
        DeepEnsemble(_member, num_members=1)
    with pytest.raises(TypeError, match="build_fn"):
        DeepEnsemble(None)


def test_build_fn_without_a_seed_argument_and_a_binary_classifier_ensemble():
    def member():  # no seed argument: the global seed differs per member
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])

    model = DeepEnsemble(member, num_members=3, seed=1)
    kernels = [m.layers[0].kernel.numpy() for m in model.members]
    assert not np.allclose(kernels[0], kernels[1])
    result = tfp_uq.predict(model, X[:5])
    positive = np.stack([m(X[:5]).numpy()[:, 0] for m in model.members]).mean(0)
    assert result.task == "classification"
    np.testing.assert_allclose(result.probs[:, 1], positive, rtol=1e-5)
