"""The posterior protocol: a new kind of posterior is one class, and predict, export and load take it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import posterior as posterior_lib

X = np.random.default_rng(0).normal(size=(12, 3)).astype("float32")


@keras.saving.register_keras_serializable(package="tests")
class Shifted(posterior_lib.Posterior):
    """A point model whose outputs are shifted by N(0, scale^2) noise: predictive variance scale^2."""

    def __init__(self, model, scale=0.5):
        super().__init__(model)
        self.scale = scale

    def sample_outputs(self, inputs, num_samples, seed):
        outputs = self.model(inputs, training=False)
        noise = tf.random.stateless_normal((num_samples,) + tuple(outputs.shape[1:]), tf.cast(seed, "int32"))
        return outputs[None] + self.scale * noise[:, None]

    def save_state(self, folder):
        return {"scale": self.scale}

    @classmethod
    def from_state(cls, model, folder, config):
        return cls(model, **config)


def _point_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_a_new_kind_of_posterior_predicts_through_tfp_uq_predict():
    model = _point_model()
    result = tfp_uq.predict(Shifted(model), X, num_samples=4000, seed=0, task="regression")
    np.testing.assert_allclose(result.mean, model.predict(X, verbose=0), atol=4 * 0.5 / np.sqrt(4000))
    np.testing.assert_allclose(result.epistemic_variance, 0.25, rtol=0.1)
    again = tfp_uq.predict(Shifted(model), X, num_samples=4000, seed=0, task="regression")
    np.testing.assert_array_equal(again.mean, result.mean)


def test_a_new_kind_of_posterior_exports_and_loads_by_name(tmp_path):
    model = _point_model()
    shifted = Shifted(model, scale=0.25)
    served = tf.saved_model.load(tfp_uq.export(shifted, tmp_path / "export", num_samples=2000, seed=1))
    outputs = served.serve(X)
    np.testing.assert_allclose(outputs["epistemic_std"].numpy(), 0.25, rtol=0.1)
    posterior_lib.save(shifted, tmp_path / "saved")
    loaded = posterior_lib.load(tmp_path / "saved")
    assert isinstance(loaded, Shifted) and loaded.scale == 0.25
    np.testing.assert_array_equal(
        tfp_uq.predict(loaded, X, num_samples=8, seed=2).mean, tfp_uq.predict(shifted, X, num_samples=8, seed=2).mean
    )


def test_models_and_ensembles_save_and_load_as_posteriors(tmp_path):
    bnn = keras.Sequential([keras.Input((3,)), tfp_uq.DenseFlipout(2, seed=1, posterior_scale_init=0.2)])
    posterior_lib.save(bnn, tmp_path / "bnn")
    loaded = posterior_lib.load(tmp_path / "bnn")
    assert isinstance(loaded, posterior_lib.ModelPosterior)
    np.testing.assert_array_equal(
        tfp_uq.predict(loaded, X, num_samples=5, seed=0).mean, tfp_uq.predict(bnn, X, num_samples=5, seed=0).mean
    )
    ensemble = tfp_uq.ensembles.DeepEnsemble(_point_model, num_members=2)
    ensemble(X[:1])
    posterior_lib.save(ensemble, tmp_path / "ensemble")
    restored = posterior_lib.load(tmp_path / "ensemble")
    assert isinstance(restored, tfp_uq.ensembles.EnsemblePosterior)
    np.testing.assert_allclose(tfp_uq.predict(restored, X).mean, tfp_uq.predict(ensemble, X).mean, rtol=1e-6)


def test_unregistered_posteriors_and_foreign_objects_are_refused(tmp_path):
    class Unregistered(Shifted):
        pass

    with pytest.raises(TypeError, match="register"):
        posterior_lib.save(Unregistered(_point_model()), tmp_path / "x")
    with pytest.raises(TypeError, match="keras.Model or a tfp_uq.posterior.Posterior"):
        posterior_lib.as_posterior("model.keras")
    with pytest.raises(ValueError, match="model.keras"):
        posterior_lib.load(tmp_path)
